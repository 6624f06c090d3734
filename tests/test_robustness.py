"""Ctrl-C at random points of load, prefill, decode and convert; peak memory of a 1.5B-shape model."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, ROOT

RNG = np.random.default_rng(11)


def interrupted(fn, delay: float) -> bool:
    """Run fn with a SIGINT (Ctrl-C) arriving after `delay` seconds; True if fn was cut short.
    If fn finishes first, the interrupt is taken while waiting here, never later."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    finished = False
    try:
        timer.start()
        fn()
        finished = True
        while True:
            time.sleep(0.001)
    except KeyboardInterrupt:
        pass
    timer.join()
    return not finished


def delays(stage_seconds: float, n: int = 8) -> list[float]:
    return sorted(RNG.uniform(0, stage_seconds * 1.1, n).tolist())


def _healthy(model, reference):
    assert not model._lock.locked() and model._owner is None
    assert model.generate("Hello", max_new_tokens=6, temperature=0).tokens == reference


@pytest.fixture(scope="module")
def reference(tiny_r1):
    return r1lite.load(tiny_r1, threads=2, context=4096).generate(
        "Hello", max_new_tokens=6, temperature=0).tokens


def test_ctrl_c_during_prefill_and_decode(tiny_r1, reference):
    model = r1lite.load(tiny_r1, threads=2, context=4096)
    long_prompt = RNG.integers(0, 150000, 4000).tolist()
    cut = 0
    for work in (lambda: model.generate(long_prompt, max_new_tokens=1),       # prefill
                 lambda: model.generate("Hello", max_new_tokens=1500, temperature=0)):  # decode
        t = time.perf_counter()
        work()
        for delay in delays(time.perf_counter() - t):
            cut += interrupted(work, delay)
            _healthy(model, reference)
    assert cut >= 8  # most interrupts landed inside the work


def test_ctrl_c_during_load(tiny_r1, reference):
    folder = FIXTURES / "deepseek_v3_f32"
    t = time.perf_counter()
    r1lite.load(folder)
    for delay in delays(time.perf_counter() - t):
        interrupted(lambda: r1lite.load(folder), delay)
    oracle = np.load(folder / "oracle.npz")
    got = r1lite.load(folder, kv_cache="f32").logits(oracle["tokens"])
    assert np.abs(got - oracle["logits"]).max() <= 1e-4 * np.abs(oracle["logits"]).max()


def test_ctrl_c_during_convert_leaves_no_partial_file(tmp_path):
    src = FIXTURES / "deepseek_v3_f32"
    out = tmp_path / "model.safetensors"
    t = time.perf_counter()
    r1lite.convert(src, out, "q4_0", progress=False)
    seconds = time.perf_counter() - t
    out.unlink()
    for delay in delays(seconds):
        if interrupted(lambda: r1lite.convert(src, out, "q4_0", progress=False), delay):
            assert not out.exists()
        elif out.exists():  # finished before the interrupt: complete and loadable
            r1lite.load(out).logits([1, 2])
            out.unlink()
        assert list(tmp_path.iterdir()) == []  # no .partial left behind
    r1lite.convert(src, out, "q4_0", progress=False)
    r1lite.load(out).logits([1, 2])


PEAK_SCRIPT = """
import sys, numpy as np, r1lite
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
m = r1lite.load(sys.argv[1], threads=2, context=64)
core = m._core
logits = core.forward(np.arange(16, dtype=np.int32), False)
for _ in range(8):
    logits = core.forward(np.array([int(logits.argmax())], np.int32), False)
print(status("VmHWM"), core.cache_bytes)
"""


def test_peak_memory_of_a_1_5b_q8_0_model(tmp_path):
    """Loading maps the file: peak resident memory stays within the file (every weight is
    touched by a forward), the KV cache and 150 MB."""
    sys.path.insert(0, str(ROOT / "tools"))
    from bench import random_weights
    from r1lite.config import normalize_hf_config
    from r1lite.converter import write_model_file

    def write_random_model(path):
        cfg_path = ROOT / "tests" / "assets" / "deepseek-r1-distill-qwen" / "config-1.5b.json"
        cfg = normalize_hf_config(json.loads(cfg_path.read_text()), str(cfg_path))
        tensors = random_weights(cfg, "q8_0")
        formats = {name: entry[1] for name, entry in tensors.items()}
        return write_model_file(path, cfg, formats, lambda name: tensors[name], {}, progress=False)

    out = write_random_model(tmp_path / "1.5b-q8_0.safetensors")
    run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(out)], capture_output=True,
                         text=True, check=True)
    peak, cache = map(int, run.stdout.split())
    size = out.stat().st_size
    assert size > 1.8e9 and cache > 0
    assert peak <= size + cache + (150 << 20), f"peak {peak / 2**20:.0f} MiB, file {size / 2**20:.0f} MiB"
