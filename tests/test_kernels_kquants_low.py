"""The SIMD kernels of q2_k, q3_k and iq4_xs (csrc/cpu/kquants_low_*.cpp) at the extremes that
random blocks rarely reach: every quant and sub-block scale at its largest or smallest (q3_k's
scale -32 times quant -4, iq4_xs's -127 entry times scale -32), with activations at +-127 of the
same or alternating sign, so that any int16 step that could saturate would show. Compared with
the scalar reference (tests/test_block_formats.py covers random blocks)."""

import numpy as np
import pytest

from r1lite import _core
from r1lite.formats.blocks import BLOCK_DTYPES

FORMATS = ["q3_k", "q2_k", "iq4_xs"]
ISAS = [isa for isa in ("avx2", "avx512") if _core.isa_supported(isa)]
FILLS = [0x00, 0xFF, 0xAA, 0x55, 0x0F, 0xF0, None]


def _blocks(fmt, n, fill, rng):
    dt = BLOCK_DTYPES[fmt]
    if fill is None:
        raw = rng.integers(0, 256, size=n * dt.itemsize, dtype=np.uint8)
    else:
        raw = np.full(n * dt.itemsize, fill, np.uint8)
    blocks = raw.view(dt)
    for field, (ftype, _) in dt.fields.items():
        if ftype == np.dtype("<f2"):
            blocks[field] = np.float16(0.01)
    return raw


def _activations(kind, tokens, cols, rng):
    if kind == "plus":
        return np.ones((tokens, cols), np.float32)
    if kind == "minus":
        return -np.ones((tokens, cols), np.float32)
    if kind == "alternating":
        return np.tile(np.where(np.arange(cols) % 2 == 0, 1.0, -1.0).astype(np.float32), (tokens, 1))
    return rng.standard_normal((tokens, cols)).astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("act", ["plus", "minus", "alternating", "random"])
def test_extreme_blocks_match_the_scalar_reference(isa, fmt, fill, act):
    rng = np.random.default_rng(7)
    rows, blocks = 6, 3
    cols = blocks * 256
    w = _blocks(fmt, rows * blocks, fill, rng).reshape(rows, -1)
    for tokens in (1, 5):
        x = _activations(act, tokens, cols, rng)
        want = _core.matmul(x, w, fmt, "scalar")
        got = _core.matmul(x, w, fmt, isa)
        # rounding is relative to the terms' magnitudes, not to the sum's (q2_k's 0x55 blocks
        # dequantize to exactly 0: d·sc·q and dmin·m cancel; dmin·m is at most 0.01·15)
        term = np.abs(_core.dequantize_blocks(fmt, w)).max() + 0.01 * 15
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * term * np.abs(x).sum(axis=1).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_token_gets_the_same_result_alone_or_in_a_batch(isa, fmt):
    rng = np.random.default_rng(3)
    rows, cols = 37, 4 * 256
    w = _blocks(fmt, rows * cols // 256, None, rng).reshape(rows, -1)
    x = rng.standard_normal((9, cols)).astype(np.float32)
    batch = _core.matmul(x, w, fmt, isa)
    for t in (0, 4, 8):
        np.testing.assert_array_equal(_core.matmul(x[t:t + 1], w, fmt, isa), batch[t:t + 1])
