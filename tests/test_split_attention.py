"""Attention over a long context cut into position ranges run as separate tasks and merged
(csrc/model/attend.h, the flash-decoding split): used when a token's kv heads (GQA) or its one
latent row (MLA) leave threads idle. The split path's logits against the unsplit path's (one
thread: never split), which the transformers fixtures check."""

import numpy as np
import pytest

import r1lite
from r1lite import _core
from conftest import FIXTURES, rel_err

POSITIONS = 3200  # > 3 · 1024: up to three ranges


def test_when_a_context_is_split():
    assert _core.attention_splits(POSITIONS, 2, 1) == 1   # one thread: nothing to spread
    assert _core.attention_splits(POSITIONS, 2, 2) == 1   # a kv head per thread already
    assert _core.attention_splits(POSITIONS, 2, 4) == 2
    assert _core.attention_splits(POSITIONS, 1, 8) == 3   # at least 1024 positions per range
    assert _core.attention_splits(1500, 1, 8) == 1        # too short to pay for the merge


def logits(folder, threads, tokens, kv_cache="f32", chunk=512):
    model = r1lite.load(folder, kv_cache=kv_cache, context=len(tokens), threads=threads)
    return model.logits(tokens, chunk=chunk)[-48:]


@pytest.mark.parametrize("name,threads", [("qwen2_f32", 4), ("llama3_f32", 3), ("deepseek_v3_f32", 3),
                                          ("deepseek_v2_f32", 2)])
def test_split_attention_matches_the_whole_context(name, threads):
    folder = FIXTURES / name
    cfg = r1lite.load(folder).config
    units = 1 if cfg.get("kv_lora_rank") else cfg["num_kv_heads"]
    assert _core.attention_splits(POSITIONS, units, threads) > 1  # the path under test runs
    tokens = np.random.default_rng(1).integers(0, cfg["vocab_size"], POSITIONS)
    want = logits(folder, 1, tokens)
    got = logits(folder, threads, tokens)
    assert rel_err(got, want) <= 1e-5
    # decode one position at a time at depth (the split's main use) agrees too
    model = r1lite.load(folder, kv_cache="f32", context=POSITIONS, threads=threads)
    with model.session() as s:
        for i in range(0, POSITIONS - 4, 512):
            s.forward(tokens[i:min(i + 512, POSITIONS - 4)], False)
        stepped = np.stack([np.asarray(s.forward(tokens[j:j + 1], False)).reshape(-1)
                            for j in range(POSITIONS - 4, POSITIONS)])
    assert rel_err(stepped, want[-4:]) <= 1e-5


def test_split_attention_in_a_16_bit_cache():
    folder = FIXTURES / "qwen2_f32"
    tokens = np.random.default_rng(2).integers(0, 131, POSITIONS)
    assert rel_err(logits(folder, 4, tokens, "f16"), logits(folder, 1, tokens, "f16")) <= 1e-5
