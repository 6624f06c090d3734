"""GGUF's i-quants (iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m: core/blocks.h, csrc/cpu/iquants_*.cpp): blocks written by
llama.cpp's own quantizer (tests/fixtures/iquant_blocks.npz, tools/make_iquant_fixtures.py)
decoded by the scalar reference exactly as the `gguf` package decodes them, and every ISA's
kernel against the scalar reference on those blocks and at the extremes random blocks rarely
reach (largest grid entries and scales, activations at +-127 of one or alternating signs), with
odd row and token counts. tests/test_block_formats.py covers random blocks of every format."""

import ctypes

import numpy as np
import pytest

from conftest import FIXTURES, arrays_in_a_child, llamacpp_bin
from r1lite import _core
from r1lite.formats.blocks import BLOCK_DTYPES, random_blocks, set_iq1m_scale

gguf = pytest.importorskip("gguf")

FORMATS = ["iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"]
TABLE = {f["name"]: f for f in _core.weight_formats()}
ISAS = [isa for isa in ("avx2", "avx512") if _core.isa_supported(isa)]
LLAMACPP = np.load(FIXTURES / "iquant_blocks.npz")


def _gguf_decode(fmt, raw):
    qtype = getattr(gguf.GGMLQuantizationType, TABLE[fmt]["gguf_name"])
    return np.asarray(gguf.quants.dequantize(np.ascontiguousarray(raw), qtype), np.float32).ravel()


@pytest.mark.parametrize("fmt", FORMATS)
def test_llamacpp_blocks_decode_as_the_gguf_package_decodes_them(fmt):
    raw, w = LLAMACPP[fmt], LLAMACPP["weights"]
    got = _core.dequantize_blocks(fmt, raw.ravel()).reshape(w.shape)
    np.testing.assert_array_equal(got.ravel(), _gguf_decode(fmt, raw))
    assert not got[0, :256].any()  # llama.cpp's all-zero super-block
    # and they are llama.cpp's 2- or 3-bit reading of these heavy-tailed (t3) weights, not noise
    # (measured: 0.73, 0.55, 0.53, 0.30, 0.26)
    err = np.sqrt(np.mean((got - w) ** 2) / np.mean(w ** 2))
    assert err < {"iq2_xxs": 0.75, "iq2_xs": 0.6, "iq2_s": 0.6, "iq3_xxs": 0.33, "iq3_s": 0.3, "iq1_s": 0.7,
                  "iq1_m": 0.6}[fmt], err


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_blocks_decode_as_llamacpp_decodes_them(fmt):
    """A second oracle where a llama.cpp build is present: its own dequantize_row_<fmt>."""
    bin_dir = llamacpp_bin()
    if bin_dir is None or not (bin_dir / "libggml-base.so").is_file():
        pytest.skip("no llama.cpp build (LLAMACPP_HOME)")
    fn = getattr(ctypes.CDLL(str(bin_dir / "libggml-base.so")), f"dequantize_row_{fmt}")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    raw = random_blocks(fmt, 64, np.random.default_rng(5))
    want = np.zeros(64 * 256, np.float32)
    fn(raw.ctypes.data, want.ctypes.data, want.size)
    np.testing.assert_array_equal(_core.dequantize_blocks(fmt, raw), want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_kernels_on_llamacpp_blocks(fmt, isa):
    raw = LLAMACPP[fmt]
    cols = LLAMACPP["weights"].shape[1]
    x = np.random.default_rng(4).standard_normal((5, cols)).astype(np.float32)
    want = _core.matmul(x, raw, fmt, "scalar")
    wf = _core.dequantize_blocks(fmt, raw.ravel()).reshape(raw.shape[0], cols)
    assert np.abs(want - x @ wf.T).max() <= 0.02 * np.abs(x @ wf.T).max()  # int8 activations
    np.testing.assert_allclose(_core.matmul(x, raw, fmt, isa), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def _set_scale(fmt, raw, d):
    if fmt == "iq1_m":  # d spread over the scales words' top nibbles
        set_iq1m_scale(raw.view(BLOCK_DTYPES[fmt]), d)
    else:
        raw.view(BLOCK_DTYPES[fmt])["d"] = d


def _blocks(fmt, n, fill, rng):
    dt = BLOCK_DTYPES[fmt]
    raw = rng.integers(0, 256, n * dt.itemsize, dtype=np.uint8) if fill is None else np.full(n * dt.itemsize, fill, np.uint8)
    _set_scale(fmt, raw, np.float16(0.01))
    return raw


def _activations(kind, tokens, cols, rng):
    if kind == "plus":
        return np.ones((tokens, cols), np.float32)
    if kind == "alternating":
        return np.tile(np.where(np.arange(cols) % 2 == 0, 1.0, -1.0).astype(np.float32), (tokens, 1))
    return rng.standard_normal((tokens, cols)).astype(np.float32)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fill", [0x00, 0xFF, 0xAA, 0x55, None])
@pytest.mark.parametrize("act", ["plus", "alternating", "random"])
def test_extreme_blocks_match_the_scalar_reference(isa, fmt, fill, act):
    # 0xFF: the last grid entry (which holds the largest adjacent pair, the maddubs bound: 43 + 43
    # for iq2_xxs, 52 + 62 for iq3_xxs, 15 + 15 for iq3_s) at scale 15 with every sign index 127
    # (every sign bit set for the formats that store them)
    rng = np.random.default_rng(7)
    rows, blocks = 7, 3
    cols = blocks * 256
    w = _blocks(fmt, rows * blocks, fill, rng).reshape(rows, -1)
    for tokens in (1, 6, 13):
        x = _activations(act, tokens, cols, rng)
        want = _core.matmul(x, w, fmt, "scalar")
        got = _core.matmul(x, w, fmt, isa)
        term = np.abs(_core.dequantize_blocks(fmt, w)).max()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * term * np.abs(x).sum(axis=1).max())


def _iq1_extreme_blocks(fmt, n, sign):
    """iq1 blocks at the largest integer sums: every group the grid entry of eight sign's (+1 or
    -1, found in the gguf package's grid), its delta of the same sign, every 3-bit scale 7."""
    cls = gguf.quants.IQ1_S
    cls.init_grid()
    index = int(np.flatnonzero((cls.grid.reshape(-1, 8) == sign).all(axis=1))[0])
    b = np.zeros(n, BLOCK_DTYPES[fmt])
    b["qs"] = index & 0xFF
    neg = 0 if sign > 0 else 1
    if fmt == "iq1_s":  # 3 index bits per group, scale in bits 12-14, delta sign bit 15
        hi = index >> 8
        b["qh"] = hi | hi << 3 | hi << 6 | hi << 9 | 7 << 12 | neg << 15
    else:  # a nibble per group: 3 index bits and the delta sign; 3-bit scales
        nib = index >> 8 | neg << 3
        b["qh"] = nib | nib << 4
        b["scales"] = 0o7777
    raw = b.view(np.uint8).ravel()
    _set_scale(fmt, raw, np.float16(0.01))
    return raw


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", ["iq1_s", "iq1_m"])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("act", ["plus", "alternating", "random"])
def test_iq1_extreme_blocks_match_the_scalar_reference(isa, fmt, sign, act):
    rows, blocks = 5, 3
    w = _iq1_extreme_blocks(fmt, rows * blocks, sign).reshape(rows, -1)
    values = _core.dequantize_blocks(fmt, w)
    np.testing.assert_allclose(values, sign * float(np.float16(0.01)) * 15 * 1.125, rtol=1e-6)  # d·(2·7+1)·(1+1/8)
    rng = np.random.default_rng(11)
    for tokens in (1, 5, 13):
        x = _activations(act, tokens, blocks * 256, rng)
        want = _core.matmul(x, w, fmt, "scalar")
        np.testing.assert_allclose(_core.matmul(x, w, fmt, isa), want, rtol=1e-5,
                                   atol=1e-6 * np.abs(values).max() * np.abs(x).sum(axis=1).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_prefill_tiles_match_the_scalar_reference(isa, fmt):
    """From 2 tokens on, the kernels unpack each block of 16 rows once and run int8 tiles over
    the tokens: token counts through several tiles with leftovers, rows that fill neither the
    16-row blocks nor the tiles' rows, several super-blocks per row."""
    rng = np.random.default_rng(12)
    rows, blocks = 37, 3
    w = _blocks(fmt, rows * blocks, None, rng).reshape(rows, -1)
    for tokens in (2, 3, 5, 13, 22):
        x = rng.standard_normal((tokens, blocks * 256)).astype(np.float32)
        want = _core.matmul(x, w, fmt, "scalar")
        np.testing.assert_allclose(_core.matmul(x, w, fmt, isa), want, rtol=1e-4, atol=1e-5 * np.abs(want).max(),
                                   err_msg=f"{tokens} tokens")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_token_gets_the_same_result_alone_or_in_a_batch(isa, fmt):
    """Bit for bit: alone a token goes through the decode tile on the raw blocks, in a batch
    through a prefill tile on the unpacked rows (in a full tile, or among the leftovers)."""
    rng = np.random.default_rng(3)
    rows, cols = 37, 4 * 256
    w = _blocks(fmt, rows * cols // 256, None, rng).reshape(rows, -1)
    x = rng.standard_normal((22, cols)).astype(np.float32)
    for n in (2, 9, 22):
        batch = _core.matmul(x[:n], w, fmt, isa)
        for t in sorted({0, 1, n // 2, n - 1}):
            np.testing.assert_array_equal(_core.matmul(x[t:t + 1], w, fmt, isa), batch[t:t + 1],
                                          err_msg=f"token {t} of {n}")


VBMI_FORMATS = ["iq2_xxs", "iq2_xs", "iq3_xxs"]


def _vbmi_case(fmt, fill):
    rng = np.random.default_rng(5)
    w = _blocks(fmt, 29 * 5, fill, rng).reshape(29, -1)
    return w, rng.standard_normal((5, 5 * 256)).astype(np.float32)


def test_decode_without_vbmi_is_the_same():
    """Where the CPU has AVX-512 VBMI, iq2_xxs, iq2_xs and iq3_xxs calls of fewer than 10 tokens
    build their magnitudes with byte permutes; elsewhere (R1LITE_VBMI=0 forces it) with grid loads
    (1 token) or unpacked int8 tiles (5). Both give the same bits, at the extremes (every sign and the
    largest grid entry and scale) and on random blocks."""
    if not (_core.isa_supported("avx512") and _core.cpu_features()["avx512_vbmi"]):
        pytest.skip("needs AVX-512 VBMI to compare the two decode paths")
    script = (
        "import sys, numpy as np\n"
        "from r1lite import _core\n"
        "from test_iquants import VBMI_FORMATS, _vbmi_case\n"
        "assert not _core.cpu_features()['avx512_vbmi']\n"
        "out = {}\n"
        "for fmt in VBMI_FORMATS:\n"
        "    for fill in (0x00, 0xFF, 0xAA, None):\n"
        "        w, x = _vbmi_case(fmt, fill)\n"
        "        out[f'{fmt} {fill}'] = _core.matmul(x, w, fmt, 'avx512')\n"
        "        out[f'{fmt} {fill} one'] = _core.matmul(x[:1], w, fmt, 'avx512')\n"
        "np.savez(sys.argv[1], **out)\n")
    grid_loads = arrays_in_a_child({"R1LITE_VBMI": "0"}, script)
    for fmt in VBMI_FORMATS:
        for fill in (0x00, 0xFF, 0xAA, None):
            w, x = _vbmi_case(fmt, fill)
            np.testing.assert_array_equal(_core.matmul(x, w, fmt, "avx512"), grid_loads[f"{fmt} {fill}"],
                                          err_msg=f"{fmt}, fill {fill}, 5 tokens")
            np.testing.assert_array_equal(_core.matmul(x[:1], w, fmt, "avx512"), grid_loads[f"{fmt} {fill} one"],
                                          err_msg=f"{fmt}, fill {fill}, 1 token")


@pytest.mark.parametrize("fmt", FORMATS)
def test_partial_blocks_are_refused(fmt):
    w = _blocks(fmt, 2, None, np.random.default_rng(0)).reshape(2, -1)
    with pytest.raises(ValueError, match="blocks do not fit"):
        _core.matmul(np.ones((1, 200), np.float32), w, fmt, "scalar")
    with pytest.raises(ValueError):
        _core.dequantize_blocks(fmt, w.ravel()[:-1])
