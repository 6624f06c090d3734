"""GGUF files of Qwen3 models (DeepSeek-R1-0528-Qwen3-8B's architecture) as llama.cpp's converter
writes them, against transformers' logits of the same checkpoint (tests/fixtures). Qwen3's
converter (convert_hf_to_gguf.py Qwen3Model, a Qwen2Model) keeps q/k rows in the checkpoint's
rotate-half order and names the per-head norms attn_q_norm / attn_k_norm; key_length holds
head_dim. Checked once against llama.cpp's own converter (2026-11-30, the llama.cpp tree of the
llama-cpp-python 0.3.36 sdist): convert_hf_to_gguf.py on a random Qwen3 checkpoint (head_dim 22,
R1-Distill tokenizer) writes exactly these tensor names and qwen3.attention.key_length, and
r1lite's logits on that file are within 1.1e-6 of transformers' on the checkpoint."""

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, rel_err

gguf = pytest.importorskip("gguf")
from test_gguf_llama import write_dense_gguf  # noqa: E402  (needs gguf)


def write_qwen3_gguf(folder, out):
    return write_dense_gguf(folder, out, "qwen3")


@pytest.mark.parametrize("fixture", ["qwen3_f32", "qwen3_bf16_tied"])
def test_qwen3_gguf_matches_transformers(tmp_path, fixture):
    folder = FIXTURES / fixture
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(write_qwen3_gguf(folder, tmp_path / "qwen3.gguf"), threads=2, kv_cache="f32")
    cfg = model.config
    assert cfg["architecture"] == "qwen3" and cfg["qk_norm"] and not cfg["qkv_bias"]
    assert cfg["tied_embeddings"] == (fixture == "qwen3_bf16_tied")
    for chunk in (None, 3):
        got = model.logits(oracle["tokens"], chunk=chunk)
        assert rel_err(got, oracle["logits"]) <= 1e-4
    np.testing.assert_array_equal(got.argmax(-1), oracle["logits"].argmax(-1))


def test_qwen3_per_head_norms_matter(tmp_path):
    """Without its q/k norms (all ones) the same file gives other logits: the fixture tests them."""
    folder = FIXTURES / "qwen3_f32"
    oracle = np.load(folder / "oracle.npz")
    path = write_qwen3_gguf(folder, tmp_path / "qwen3.gguf")
    reader = gguf.GGUFReader(str(path), "r+")
    for t in reader.tensors:
        if t.name.endswith(("attn_q_norm.weight", "attn_k_norm.weight")):
            t.data[:] = 1.0
    del reader
    got = r1lite.load(path, threads=2, kv_cache="f32").logits(oracle["tokens"])
    assert rel_err(got, oracle["logits"]) > 1e-2
