#!/usr/bin/env python3
"""Prefill and decode speed of a random-weight model of a real shape, against this machine's
measured read bandwidth.

    python tools/bench.py                                   # R1-Distill-Qwen-1.5B shape, bf16
    python tools/bench.py --config tests/assets/deepseek-r1-distill-qwen/config-7b.json \
        --prefill 128 --decode 16 --threads 2
    python tools/bench.py --model model.safetensors --format q8_0     # an r1lite model file

Decode reads every weight matrix once per token, so decode tok/s x bytes per token is the
achieved read bandwidth; the tool prints it next to the bandwidth a plain read loop reaches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import r1lite
from r1lite import _core
from r1lite.benchmark import decode_bytes_per_token, run
from r1lite.config import normalize_hf_config
from r1lite.formats.r1file import plane_shapes
from r1lite.formats.tensors import expected_tensors

DEFAULT_CONFIG = (Path(__file__).resolve().parents[1] / "tests" / "assets" /
                  "deepseek-r1-distill-qwen" / "config-1.5b.json")
FORMATS = {"bf16": np.uint16, "f16": np.float16, "f32": np.float32, "q8_0": np.int8, "q4_0": np.uint8}


def _filled(shape, pool: np.ndarray) -> np.ndarray:
    arr = np.empty(shape, pool.dtype)
    flat = arr.reshape(-1)
    for i in range(0, flat.size, pool.size):
        n = min(pool.size, flat.size - i)
        flat[i:i + n] = pool[:n]
    return arr


def random_weights(cfg: dict, fmt: str, seed: int = 0) -> dict:
    """Weights with the right shapes and a realistic value range, filled quickly by repeating a
    random pool (content does not change the speed). Quantized formats get random quant planes
    and small scales directly."""
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(1 << 22) * 0.02).astype(np.float32)
    if fmt == "bf16":
        pool = (pool.view(np.uint32) >> 16).astype(np.uint16)
    elif fmt in ("q8_0", "q4_0"):
        pool = rng.integers(0, 256, 1 << 22, dtype=np.uint8).view(FORMATS[fmt])
    else:
        pool = pool.astype(FORMATS[fmt])
    scale_pool = np.full(1 << 16, 0.001, np.float16)
    tensors = {}
    for name, (shape, kind) in expected_tensors(cfg).items():
        if name.endswith(".router"):  # random, so that tokens pick different experts
            tensors[name] = (rng.standard_normal(shape).astype(np.float32), "f32")
        elif kind == "f32":
            tensors[name] = (np.ones(shape, np.float32), "f32")
        elif fmt in ("q8_0", "q4_0"):
            (_, qshape), (_, sshape) = plane_shapes(fmt, shape)
            tensors[name] = (_filled(qshape, pool), fmt, _filled(sshape, scale_pool))
        else:
            tensors[name] = (_filled(shape, pool), fmt)
    return tensors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="a Hugging Face config.json")
    ap.add_argument("--model", default=None, help="an r1lite model file instead of random weights")
    ap.add_argument("--format", default="bf16", choices=list(FORMATS), help="for random weights")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prefill", type=int, default=512, help="prompt tokens")
    ap.add_argument("--decode", type=int, default=128, help="generated tokens")
    ap.add_argument("--repeats", type=int, default=1, help="prefill+decode rounds")
    args = ap.parse_args(argv)

    threads = args.threads or r1lite.loader.default_threads()
    t0 = time.perf_counter()
    if args.model:
        from r1lite.formats.r1file import load_r1_file

        cfg, tensors, _ = load_r1_file(args.model)
        core = r1lite.load(args.model, threads=threads, context=args.prefill + args.decode + 1)._core
        name = Path(args.model).name
    else:
        cfg_path = Path(args.config)
        if not cfg_path.is_file():
            print(f"error: {cfg_path}: no such config", file=sys.stderr)
            return 1
        cfg = normalize_hf_config(json.loads(cfg_path.read_text()), str(cfg_path))
        cfg["context"] = args.prefill + args.decode + 1
        tensors = random_weights(cfg, args.format)
        core = _core.Model(cfg, tensors, threads)
        name = f"{cfg_path.name} {args.format}"
    per_token = decode_bytes_per_token(tensors, cfg)
    print(f"model: {name}, {per_token / 1e9:.2f} GB of weights read per "
          f"decode step, ready in {time.perf_counter() - t0:.2f} s; threads {threads}, "
          f"isa {_core.active_isa()}")

    bandwidth = _core.measure_read_bandwidth(1 << 30, threads, 5)
    rates = run(core, cfg["vocab_size"], args.prefill, args.decode, args.repeats)
    prefill, decode = rates["prefill_tok_s"], rates["decode_tok_s"]
    achieved = decode * per_token
    print(f"prefill {args.prefill} tokens: {prefill:.1f} tok/s")
    print(f"decode {args.decode} tokens:  {decode:.2f} tok/s = {achieved / 1e9:.1f} GB/s of weights, "
          f"{100 * achieved / bandwidth:.0f}% of the measured read bandwidth "
          f"({bandwidth / 1e9:.1f} GB/s, {threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
