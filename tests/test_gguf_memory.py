"""A Q4_K_M GGUF runs at its own size: loading it and decoding a few tokens grows the peak
resident memory by at most the file plus the KV cache plus 300 MB (dequantized to f32 as r1lite
once did, the same model would need ~7x the file). The model is random blocks of a real
architecture (tools/make_random_gguf.py), large enough for the difference to show."""

import json
import subprocess
import sys

import pytest

from conftest import FIXTURES
from make_random_gguf import random_gguf

pytest.importorskip("gguf")

# R1-Distill-Qwen-1.5B's config cut to 8 layers of a 2048-wide model: 0.35 GB as Q4_K_M, 2.3 GB as f32
SHAPE = {"hidden_size": 2048, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 2,
         "intermediate_size": 5632}

MEASURE = r"""
import json, sys
import r1lite
def peak():  # VmHWM: this image's peak (ru_maxrss would keep the forking parent's across exec)
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
base = peak()
m = r1lite.load(sys.argv[1], context=64)
g = m.generate(list(range(100, 116)), max_new_tokens=4, temperature=0)
print(json.dumps({"grown": peak() - base, "cache": m.kv_bytes_per_token * 64, "tokens": len(g.tokens)}))
"""


def _assert_runs_within_its_size(path):
    """Loading `path` and decoding 4 tokens grows the peak resident memory by at most the file,
    the KV cache and 300 MB."""
    size = path.stat().st_size
    r = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                       timeout=600, cwd=FIXTURES.parent)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["tokens"] == 4
    assert got["grown"] <= size + got["cache"] + 300e6, (got, size)


def test_q4_k_m_file_runs_within_its_size(tmp_path):
    from r1lite.config import normalize_hf_config

    raw = json.loads((FIXTURES.parent / "assets" / "deepseek-r1-distill-qwen" / "config-1.5b.json").read_text())
    cfg = normalize_hf_config({**raw, **SHAPE}, "config-1.5b.json, cut")
    path = random_gguf(tmp_path / "model-q4_k_m.gguf", cfg, "q4_k_m")
    _assert_runs_within_its_size(path)


def test_moe_iq2_xxs_file_runs_within_its_size(tmp_path):
    """The 64-expert MLA benchmark shape (tools/bench_configs/moe-64x1408-top6.json) cut to three
    layers, as a deepseek2 GGUF at moe-iq2_xxs (routed experts IQ2_XXS / IQ2_XS, stacked as
    llama.cpp stores them): 0.4 GB, 4.9 GB as f32. The experts run from the mapped file."""
    from r1lite.config import normalize_hf_config

    raw = json.loads((FIXTURES.parent.parent / "tools" / "bench_configs" / "moe-64x1408-top6.json").read_text())
    raw["num_hidden_layers"] = 3
    cfg = normalize_hf_config(raw, "moe-64x1408-top6.json, cut")
    path = random_gguf(tmp_path / "moe-iq2_xxs.gguf", cfg, "moe-iq2_xxs", raw=raw)
    _assert_runs_within_its_size(path)
