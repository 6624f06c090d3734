"""Every SIMD matmul kernel against the scalar reference, and the scalar one against numpy."""

import numpy as np
import pytest

from r1lite import _core

ISAS = ["scalar", "avx2", "avx512"]
FORMATS = ["f32", "bf16", "f16"]
# (tokens, rows, inner): none of the inner sizes is a multiple of 8 or 16 except where stated
SHAPES = [(1, 1, 1), (1, 5, 7), (1, 33, 67), (3, 19, 8 * 3 + 5), (4, 17, 16 * 4 + 1),
          (5, 21, 16), (9, 35, 131), (13, 70, 257)]


def random_weight(rng, rows, inner, fmt):
    """(array as the kernel reads it, the same values in float64)."""
    w = rng.standard_normal((rows, inner)).astype(np.float32)
    if fmt == "f32":
        return w, w.astype(np.float64)
    if fmt == "f16":
        h = w.astype(np.float16)
        return h, h.astype(np.float64)
    bits = (w.view(np.uint32) >> 16).astype(np.uint16)  # truncate to bf16
    return bits, (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{t}x{r}x{k}" for t, r, k in SHAPES])
def test_kernels_agree_with_reference(fmt, shape):
    n_tok, rows, inner = shape
    rng = np.random.default_rng(rows * 1000 + inner)
    x = rng.standard_normal((n_tok, inner)).astype(np.float32)
    w, w64 = random_weight(rng, rows, inner, fmt)
    exact = x.astype(np.float64) @ w64.T
    tol = 1e-5 * np.sqrt(inner) * np.abs(x).max() * np.abs(w64).max()
    scalar = _core.matmul(x, w, fmt, "scalar")
    np.testing.assert_allclose(scalar, exact, rtol=0, atol=tol)
    for isa in ISAS[1:]:
        if not _core.isa_supported(isa):
            continue
        got = _core.matmul(x, w, fmt, isa)
        assert got.shape == (n_tok, rows)
        np.testing.assert_allclose(got, scalar, rtol=0, atol=tol, err_msg=isa)


def test_simd_paths_exist_on_this_machine():
    feats = _core.cpu_features()
    # The CI machines have AVX-512; a build without the SIMD paths would hide behind the skips.
    assert feats["avx2"] and _core.isa_supported("avx2"), feats
    assert _core.active_isa() in ("avx2", "avx512")


def test_bad_kernel_arguments():
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="inner size"):
        _core.matmul(x, np.ones((3, 5), np.float32), "f32", "scalar")
    with pytest.raises(ValueError, match="unknown instruction set"):
        _core.matmul(x, np.ones((3, 4), np.float32), "f32", "sse9")
    with pytest.raises(ValueError, match="item size"):
        _core.matmul(x, np.ones((3, 4), np.float32), "bf16", "scalar")
