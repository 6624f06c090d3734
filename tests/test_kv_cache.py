"""The KV cache grows in pages with the context instead of being allocated up front."""

import numpy as np
import pytest

import r1lite


def test_cache_grows_in_pages(qwen2_dir):
    model = r1lite.load(qwen2_dir, context=256)
    core = model._core
    cfg = model.config
    page = 256 * cfg["num_layers"] * 2 * cfg["num_kv_heads"] * cfg["head_dim"] * 2  # f16 by default
    core.reset()
    assert core.cache_bytes == 0
    core.forward(np.arange(10, dtype=np.int32), False)
    assert core.cache_bytes == page
    core.reset()
    assert core.cache_bytes == 0


def test_large_context_costs_nothing_up_front(qwen2_dir):
    model = r1lite.load(qwen2_dir, context=1_000_000)
    model.logits([1, 2, 3])
    assert model._core.cache_bytes < 1_000_000


def test_decoding_token_by_token_across_pages(qwen2_dir):
    """Positions past the first page (256) read the right keys: compare with one long prefill."""
    model = r1lite.load(qwen2_dir, context=600, kv_cache="f32")
    tokens = np.random.default_rng(0).integers(0, 131, 300)
    full = model.logits(tokens)
    stepped = model.logits(tokens, chunk=37)
    assert np.abs(full - stepped).max() <= 1e-4 * np.abs(full).max()


@pytest.mark.parametrize("kv", ["f32", "f16", "q8_0"])
def test_prefill_is_bit_for_bit_token_by_token(qwen2_dir, kv):
    """One 300-token prefill (its attention in blocks of 4 queries that read each cached row once),
    chunks of 37 and 3, and token by token (one query at a time): the same logits, bit for bit."""
    model = r1lite.load(qwen2_dir, context=600, kv_cache=kv)
    tokens = np.random.default_rng(1).integers(0, 131, 300)
    full = model.logits(tokens)
    for chunk in (37, 3, 1):
        np.testing.assert_array_equal(model.logits(tokens, chunk=chunk), full, err_msg=f"chunks of {chunk}")
