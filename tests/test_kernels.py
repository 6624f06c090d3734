"""Every SIMD matmul kernel against the scalar reference, and the scalar one against numpy."""

import numpy as np
import pytest
from conftest import arrays_in_a_child

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


# ---- block-quantized weights ----

from r1lite import quant  # noqa: E402

QSHAPES = [(1, 3, 5), (1, 33, 32), (2, 17, 70), (4, 9, 96), (5, 21, 100), (7, 40, 257),
           (1, 8, 512), (6, 37, 613), (9, 20, 1024)]


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
@pytest.mark.parametrize("shape", QSHAPES, ids=[f"{t}x{r}x{k}" for t, r, k in QSHAPES])
def test_quantized_kernels_agree_with_reference(fmt, shape):
    n_tok, rows, inner = shape
    rng = np.random.default_rng(rows * 7 + inner)
    x = rng.standard_normal((n_tok, inner)).astype(np.float32)
    w = rng.standard_normal((rows, inner)).astype(np.float32)
    q, _, d = quant.encode(w, fmt)
    # reference: the dequantized weights times the quantized activations, in float64
    xq, xd = _core.quantize_activations(x)
    x_deq = (xq.reshape(n_tok, -1, 32) * xd[..., None]).reshape(n_tok, -1)[:, :inner]
    exact = x_deq.astype(np.float64) @ quant.dequantize(fmt, q, d, inner).astype(np.float64).T
    tol = 1e-5 * np.sqrt(inner) * np.abs(exact).max()
    scalar = _core.matmul(x, q, fmt, "scalar", d)
    np.testing.assert_allclose(scalar, exact, rtol=0, atol=tol)
    for isa in ISAS[1:]:
        if _core.isa_supported(isa):
            np.testing.assert_allclose(_core.matmul(x, q, fmt, isa, d), scalar, rtol=0, atol=tol,
                                       err_msg=isa)


def test_activation_quantization_is_q8_0():
    x = np.random.default_rng(3).standard_normal((3, 45)).astype(np.float32)
    xq, xd = _core.quantize_activations(x)
    assert xq.shape == (3, 64) and xd.shape == (3, 2)
    assert np.all(xq[:, 45:] == 0)
    np.testing.assert_allclose(xd, np.abs(np.pad(x, ((0, 0), (0, 19)))).reshape(3, 2, 32).max(2) / 127,
                               rtol=1e-6)
    deq = (xq.reshape(3, 2, 32) * xd[..., None]).reshape(3, 64)[:, :45]
    assert np.abs(deq - x).max() <= xd.max() / 2 + 1e-6


def test_activation_quantization_rounds_like_numpy():
    """Bit for bit (full 32-blocks take a SIMD path, the last partial block the plain loop):
    d = amax / 127 and q = rint(x · (1 / d)) in f32, ties to even, and the quants' sums."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 32 * 5 + 7)).astype(np.float32)
    x[1, :32] = np.arange(-16, 16, dtype=np.float32) * 0.5  # on or next to ties (±63.5 before rounding)
    x[2, 32:64] = 0.0  # an all-zero block: scale 0, quants 0
    xq, xd = _core.quantize_activations(x)
    padded = np.pad(x, ((0, 0), (0, 32 - 7))).reshape(4, -1, 32)
    d = (np.abs(padded).max(2) / np.float32(127)).astype(np.float32)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, 1), 0).astype(np.float32)
    expected = np.rint(padded * inv[..., None]).astype(np.int8).reshape(4, -1)
    np.testing.assert_array_equal(xd, d)
    np.testing.assert_array_equal(xq, expected)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_weight_quantizer_matches_ggml(fmt):
    """Against the gguf package's own implementation of ggml's quantizers (independent code)."""
    gguf = pytest.importorskip("gguf")
    w = (np.random.default_rng(5).standard_normal((6, 128)) * 0.05).astype(np.float32)
    q, _, d = quant.encode(w, fmt)
    kind = gguf.GGMLQuantizationType.Q8_0 if fmt == "q8_0" else gguf.GGMLQuantizationType.Q4_0
    blocks = gguf.quants.quantize(w, kind).reshape(6, 4, -1)  # per block: f16 scale, then quants
    np.testing.assert_array_equal(blocks[..., :2].copy().view(np.float16)[..., 0], d)
    np.testing.assert_array_equal(blocks[..., 2:].reshape(6, -1), q.view(np.uint8))


# ---- attention's weighted sum of value rows ----

@pytest.mark.parametrize("heads", [1, 3, 6, 8, 13])
@pytest.mark.parametrize("count,dim,ld", [(1, 1, 1), (3, 7, 7), (5, 16, 16), (17, 64, 64),
                                          (33, 100, 100), (256, 128, 128), (9, 37, 45),
                                          (40, 19, 24)])
@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16", "q8_0"])
def test_weighted_sum_agrees_with_reference(heads, count, dim, ld, fmt):
    # ld > dim: MLA sums the latent part of cache rows that also hold the rope key; several heads
    # (a GQA group, an MLA block) share the rows. The rows are stored in the KV cache format
    # `fmt` first; the reference sums numpy's own rounding of them to that format.
    rng = np.random.default_rng(count * 1000 + dim + heads)
    p = rng.random((heads, count)).astype(np.float32)
    rows = rng.standard_normal((count, ld)).astype(np.float32)
    exact = p.astype(np.float64) @ cache_round_trip(rows, fmt)[:, :dim].astype(np.float64)
    one_head = {}
    for isa in ISAS:
        if _core.isa_supported(isa):
            got = _core.weighted_sum(p, rows, isa, dim, fmt)
            np.testing.assert_allclose(got, exact, rtol=0, atol=1e-5 * np.sqrt(count) * 4, err_msg=isa)
            one_head[isa] = np.stack([_core.weighted_sum(p[h:h + 1], rows, isa, dim, fmt)[0] for h in range(heads)])
            np.testing.assert_array_equal(got, one_head[isa], err_msg=f"{isa}: a head alone")


def bf16_round(x: np.ndarray) -> np.ndarray:
    """f32 -> bf16 -> f32, round to nearest even, written from the format's definition."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return b.astype(np.uint32).view(np.float32)


def cache_round_trip(rows: np.ndarray, fmt: str) -> np.ndarray:
    """What a KV cache row stored in `fmt` holds, by numpy (q8_0: r1lite.quant's weight quantizer,
    itself checked against the gguf package above)."""
    from r1lite import quant

    if fmt == "f32":
        return rows
    if fmt == "f16":
        return rows.astype(np.float16).astype(np.float32)
    if fmt == "bf16":
        return bf16_round(rows)
    q, d = quant.quantize_q8_0(rows)
    return quant.dequantize("q8_0", q, d, rows.shape[1])


def test_cache_rows_are_encoded_as_numpy_rounds_them():
    """f16 and bf16 bit for bit (ties to even, subnormals, overflow to inf); q8_0 as the weight
    quantizer (scale max|x|/127 in f16, quants rounded half away from zero)."""
    edge = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e6, -1e6, 6.1e-5, 6.0e-8,
                     2.0 ** -25, 2.0 ** -25 * 1.5, 1e-9, 3.14159, 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11],
                    np.float32)
    x = np.concatenate([edge, np.random.default_rng(3).standard_normal(1000).astype(np.float32) * 10])
    bits, _ = _core.encode_row(x, "f16")
    with np.errstate(over="ignore"):  # 1e6 overflows to inf, as it must
        np.testing.assert_array_equal(bits.view(np.uint16), x.astype(np.float16).view(np.uint16))
    bits, _ = _core.encode_row(x, "bf16")
    np.testing.assert_array_equal(bits.view(np.uint16), (bf16_round(x).view(np.uint32) >> 16).astype(np.uint16))
    from r1lite import quant

    y = x[17:17 + 77]  # 77 values: a partial last block
    q, d = _core.encode_row(y, "q8_0")
    want_q, want_d = quant.quantize_q8_0(y[None])
    np.testing.assert_array_equal(q.view(np.int8), want_q[0])
    np.testing.assert_array_equal(d, want_d[0].view(np.uint16))


@pytest.mark.parametrize("fmt", FORMATS + ["q8_0", "q4_0"])
def test_a_rows_result_does_not_depend_on_its_batch(fmt):
    """Bit for bit: the server batches requests, and each must get what it gets alone. A token
    goes through a 4-token tile or the 1-token path depending on its place in the batch; both
    must round the same way."""
    from r1lite import quant

    rng = np.random.default_rng(7)
    rows, inner = 37, 32 * 11 + 5
    x = rng.standard_normal((9, inner)).astype(np.float32)
    if fmt in ("q8_0", "q4_0"):
        q, _, d = quant.encode(rng.standard_normal((rows, inner)).astype(np.float32), fmt)
        w, scales = q, d
    else:
        w, scales = random_weight(rng, rows, inner, fmt)[0], None
    for isa in ISAS:
        if not _core.isa_supported(isa):
            continue
        alone = np.stack([_core.matmul(x[i:i + 1], w, fmt, isa, scales)[0] for i in range(9)])
        for n in (2, 3, 4, 5, 6, 7, 9):
            np.testing.assert_array_equal(_core.matmul(x[:n], w, fmt, isa, scales), alone[:n],
                                          err_msg=f"{isa}, {n} rows")


def test_q4_0_nibble_split_without_gfni_is_the_same():
    """The AVX-512 q4_0 tile splits nibbles with GFNI where the CPU has it and with a shift
    elsewhere (R1LITE_GFNI=0 forces the shift): both must give the same bits, one token and four."""
    if not (_core.isa_supported("avx512") and _core.cpu_features()["gfni"]):
        pytest.skip("needs AVX-512 and GFNI to compare the two nibble splits")
    script = (
        "import sys, numpy as np\n"
        "from r1lite import _core, quant\n"
        "assert not _core.cpu_features()['gfni']\n"
        "rng = np.random.default_rng(11)\n"
        "x = rng.standard_normal((5, 32 * 21 + 3)).astype(np.float32)\n"
        "q, _, d = quant.encode(rng.standard_normal((23, 32 * 21 + 3)).astype(np.float32), 'q4_0')\n"
        "np.savez(sys.argv[1], y=_core.matmul(x, q, 'q4_0', 'avx512', d))\n")
    shifted = arrays_in_a_child({"R1LITE_GFNI": "0"}, script)["y"]
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 32 * 21 + 3)).astype(np.float32)
    q, _, d = quant.encode(rng.standard_normal((23, 32 * 21 + 3)).astype(np.float32), "q4_0")
    np.testing.assert_array_equal(_core.matmul(x, q, "q4_0", "avx512", d), shifted)


# ---- the exp of softmax and SwiGLU ----

def test_exp_is_within_two_ulp():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-87, 88, 200_000), rng.uniform(-1, 1, 10_000),
                        [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, 10.0, -87.0, 88.0],
                        np.arange(-80, 81) * np.log(2)]).astype(np.float32)
    for n in (1, 3, 4, 5, 7, len(x)):  # the four-wide loop and its tail
        got = _core.exp(x[:n])
        exact = np.exp(x[:n].astype(np.float64))
        ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(got - exact) <= 2 * ulp), np.max(np.abs(got - exact) / ulp)


def test_exp_at_the_ends():
    got = _core.exp(np.array([-np.inf, -1e4, -100.0, -88.5, 89.0, 1e4, np.inf], np.float32))
    assert np.all(got[:4] == 0.0)
    saturated = np.exp(np.float64(np.float32(88.3)))  # finite, never inf
    assert np.all(np.abs(got[4:] / saturated - 1) < 1e-6), got[4:]
    assert np.isnan(_core.exp(np.array([np.nan], np.float32))[0])
