"""GGUF's block formats computed in their own blocks (core/formats.h, core/blocks.h): the scalar
reference dequantizer against the `gguf` package's numpy dequantizer (an independent reading of
ggml's definitions), and every ISA's kernel against the scalar reference on random blocks, with
row counts and token counts that are not multiples of any tile."""

import numpy as np
import pytest

from r1lite import _core
from r1lite.formats.blocks import BLOCK_DTYPES, random_blocks

gguf = pytest.importorskip("gguf")

FORMATS = {f["name"]: f for f in _core.weight_formats()}
BLOCK_FORMATS = sorted(name for name, f in FORMATS.items() if f["layout"] == "blocks")
ISAS = [isa for isa in ("avx2", "avx512") if _core.isa_supported(isa)]


def test_the_table_lists_the_gguf_formats():
    assert set(BLOCK_FORMATS) == set(BLOCK_DTYPES)
    for name in BLOCK_FORMATS:
        f = FORMATS[name]
        assert BLOCK_DTYPES[name].itemsize == f["block_bytes"], name
        gtype = getattr(gguf.GGMLQuantizationType, f["gguf_name"])
        block, type_bytes = gguf.GGML_QUANT_SIZES[gtype]
        assert (block, type_bytes) == (f["block"], f["block_bytes"]), name


@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
def test_reference_dequantizer_matches_the_gguf_package(fmt):
    rng = np.random.default_rng(1)
    raw = random_blocks(fmt, 9, rng)
    want = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, FORMATS[fmt]["gguf_name"]))
    got = _core.dequantize_blocks(fmt, raw)
    np.testing.assert_array_equal(got, np.asarray(want, np.float32).ravel())


def _weights(fmt, rows, cols, rng):
    f = FORMATS[fmt]
    raw = random_blocks(fmt, rows * cols // f["block"], rng)
    return raw.reshape(rows, -1)


@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
def test_scalar_kernel_is_the_product_with_the_dequantized_weights(fmt):
    rng = np.random.default_rng(2)
    cols = 2 * FORMATS[fmt]["block"]
    w = _weights(fmt, 7, cols, rng)
    x = rng.standard_normal((3, cols)).astype(np.float32)
    wf = _core.dequantize_blocks(fmt, w).reshape(7, cols)
    got = _core.matmul(x, w, fmt, "scalar")
    want = x @ wf.T
    # the activations are quantized to int8 (blocks of 32 or 256): ~1% of the norm
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", BLOCK_FORMATS)
@pytest.mark.parametrize("rows,tokens,blocks", [(1, 1, 1), (5, 1, 3), (19, 1, 2), (37, 5, 3), (16, 9, 1)])
def test_kernels_match_the_scalar_reference(fmt, isa, rows, tokens, blocks):
    rng = np.random.default_rng(rows * 100 + tokens)
    cols = blocks * FORMATS[fmt]["block"]
    w = _weights(fmt, rows, cols, rng)
    x = rng.standard_normal((tokens, cols)).astype(np.float32)
    want = _core.matmul(x, w, fmt, "scalar")
    got = _core.matmul(x, w, fmt, isa)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_a_row_of_partial_blocks_is_refused():
    w = _weights("q4_k", 2, 256, np.random.default_rng(0))
    with pytest.raises(ValueError, match="blocks do not fit"):
        _core.matmul(np.ones((1, 200), np.float32), w, "q4_k", "scalar")
