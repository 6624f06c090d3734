"""r1lite's logits against transformers' logits stored by tools/make_fixtures.py."""

import numpy as np
import pytest

import r1lite
from r1lite import _core
from conftest import fixture_dirs, rel_err

TOL = 1e-4  # transformers ran in f32 on the same (upcast) weights that r1lite computes with

FIXTURES = fixture_dirs()


@pytest.mark.parametrize("folder", FIXTURES, ids=[d.name for d in FIXTURES])
@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_logits_match_transformers(folder, chunk):
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(folder, threads=2, kv_cache="f32")
    got = model.logits(oracle["tokens"], chunk=chunk)
    assert got.shape == oracle["logits"].shape
    assert got.dtype == np.float32
    assert rel_err(got, oracle["logits"]) <= TOL
    np.testing.assert_array_equal(got.argmax(-1), oracle["logits"].argmax(-1))


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_every_instruction_set_matches_transformers(isa):
    if not _core.isa_supported(isa):
        pytest.skip(f"this CPU lacks {isa}")
    before = _core.active_isa()
    _core.set_active_isa(isa)
    try:
        for folder in FIXTURES:
            oracle = np.load(folder / "oracle.npz")
            got = r1lite.load(folder, threads=1, kv_cache="f32").logits(oracle["tokens"])
            assert rel_err(got, oracle["logits"]) <= TOL, folder.name
    finally:
        _core.set_active_isa(before)


def test_thread_count_does_not_change_results():
    folder = FIXTURES[0]
    tokens = np.load(folder / "oracle.npz")["tokens"]
    one = r1lite.load(folder, threads=1, kv_cache="f32").logits(tokens)
    two = r1lite.load(folder, threads=2, kv_cache="f32").logits(tokens)
    three = r1lite.load(folder, threads=3, kv_cache="f32").logits(tokens, chunk=7)
    np.testing.assert_array_equal(one, two)
    assert rel_err(three, one) <= 1e-5


def test_config_is_normalized(qwen2_dir):
    cfg = r1lite.load(qwen2_dir).config
    assert cfg["architecture"] == "qwen2"
    assert (cfg["vocab_size"], cfg["hidden_size"], cfg["num_layers"]) == (131, 72, 2)
    assert cfg["num_heads"] == 6 and cfg["num_kv_heads"] == 2 and cfg["head_dim"] == 12
    assert cfg["qkv_bias"] is True and cfg["tied_embeddings"] is False
    assert cfg["context"] == 256  # defaults to max_position_embeddings
    assert r1lite.load(qwen2_dir, context=100).config["context"] == 100
