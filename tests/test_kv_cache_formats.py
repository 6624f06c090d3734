"""KV cache formats (f32, f16 — the default on the CPU —, bf16, q8_0): logits at positions past 4K
against the exact f32 cache, and the first 80 positions against transformers (tests/fixtures).
Measured on these fixtures (max |error| / max |logit| over the last 64 of 4160 positions):
f16 <= 8e-4, bf16 <= 4.4e-3, q8_0 <= 1.4e-2 on dense models; the bounds below leave a margin.
On the mixture-of-experts fixtures a rounded key can flip an expert choice, which moves a
position's logits far more than the rounding itself: those are judged by the 90th percentile of
positions, as the quantized-weight MoE fixtures are (test_model_file.py)."""

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, rel_err

DENSE = ["qwen2_f32", "llama3_f32", "qwen3_f32", "llama_f16"]
DEPTH_BOUND = {"f16": 2e-3, "bf16": 1e-2, "q8_0": 5e-2}
SHALLOW_BOUND = {"f16": 2e-3, "bf16": 1e-2, "q8_0": 6e-2}  # vs transformers, 80 positions


def deep_logits(folder, fmt, tokens):
    model = r1lite.load(folder, kv_cache=fmt, context=len(tokens), threads=2)
    return model.logits(tokens, chunk=512)[-64:]


def deep_tokens(folder, n=4160):
    vocab = r1lite.load(folder, kv_cache="f32").config["vocab_size"]
    return np.random.default_rng(0).integers(0, vocab, n)


@pytest.mark.parametrize("name", DENSE)
def test_16_and_8_bit_caches_stay_close_past_4k(name):
    folder = FIXTURES / name
    tokens = deep_tokens(folder)
    want = deep_logits(folder, "f32", tokens)
    oracle = np.load(folder / "oracle.npz")
    for fmt, bound in DEPTH_BOUND.items():
        got = deep_logits(folder, fmt, tokens)
        assert rel_err(got, want) <= bound, fmt
        assert np.mean(got.argmax(-1) == want.argmax(-1)) >= (1.0 if fmt == "f16" else 0.9), fmt
        shallow = r1lite.load(folder, kv_cache=fmt, threads=2).logits(oracle["tokens"])
        assert rel_err(shallow, oracle["logits"]) <= SHALLOW_BOUND[fmt], fmt
    # and the formats do differ from the exact cache: the test would see a format ignored
    assert rel_err(deep_logits(folder, "q8_0", tokens), want) > 1e-4


@pytest.mark.parametrize("name", ["deepseek_v3_f32", "deepseek_v2_f32"])
def test_latent_cache_formats_past_4k(name):
    """MLA's one cache row per position (latent + rope key) in each format."""
    folder = FIXTURES / name
    tokens = deep_tokens(folder)
    want = deep_logits(folder, "f32", tokens)
    for fmt, bound in DEPTH_BOUND.items():
        got = deep_logits(folder, fmt, tokens)
        per_position = np.abs(got - want).max(axis=1) / np.abs(want).max()
        assert np.percentile(per_position, 90) <= bound, fmt
        assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9, fmt


def test_cache_bytes_follow_the_format():
    folder = FIXTURES / "qwen2_f32"
    sizes = {fmt: r1lite.load(folder, kv_cache=fmt).kv_bytes_per_token for fmt in ("f32", "f16", "bf16", "q8_0")}
    per_value = 2 * 2 * 2 * 12  # layers · k,v · kv heads · head_dim
    assert sizes == {"f32": per_value * 4, "f16": per_value * 2, "bf16": per_value * 2,
                     "q8_0": 2 * 2 * 2 * (32 + 2)}  # head_dim 12 -> one block of 32 + an f16 scale
    mla = r1lite.load(FIXTURES / "deepseek_v3_f32", kv_cache="q8_0")
    cfg = mla.config
    row = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]  # 48: two blocks
    assert mla.kv_bytes_per_token == cfg["num_layers"] * (-(-row // 32) * 34)


@pytest.mark.parametrize("bad", ["q4_0", "f8", 16, ""])
def test_unknown_cache_formats_are_refused(bad):
    with pytest.raises(ValueError, match="kv_cache must be one of") as e:
        r1lite.load(FIXTURES / "qwen2_f32", kv_cache=bad)
    assert e.value.param == "kv_cache"


def test_a_gpu_keeps_an_f32_cache():
    with pytest.raises(ValueError, match="GPU is f32"):
        r1lite.load(FIXTURES / "qwen2_f32", device="cuda", kv_cache="f16")


def test_cli_reports_the_cache_format_and_its_share(tmp_path):
    import subprocess
    import sys

    folder = str(FIXTURES / "qwen2_f32")
    info = subprocess.run([sys.executable, "-m", "r1lite", "info", folder, "--kv-cache", "q8_0"],
                          capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert "cache per token" in info.stdout and "(q8_0)" in info.stdout
    bench = subprocess.run([sys.executable, "-m", "r1lite", "bench", folder, "--prefill", "8",
                            "--decode", "4", "--depth", "300", "--kv-cache", "bf16", "-t", "1"],
                           capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    assert "at depth 300" in bench.stdout and "of bf16 KV cache" in bench.stdout
