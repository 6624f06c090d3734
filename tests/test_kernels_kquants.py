"""The SIMD kernels of q4_k, q5_k and q6_k (csrc/cpu/kquants_avx2.cpp, kquants_avx512.cpp) at
the extremes of their blocks, where integer intermediates are largest (all quants at their
maximum, 6-bit scales and mins at 63, q6_k's int8 scales at -128 and 127, activations at
+-127), checked against the exact product in float64; and bit for bit the same result for a
token whatever its batch (tests/test_block_formats.py covers random blocks)."""

import numpy as np
import pytest
from conftest import arrays_in_a_child

from r1lite import _core
from r1lite.formats.blocks import BLOCK_DTYPES, random_blocks

FORMATS = ["q4_k", "q5_k", "q6_k"]
ISAS = [isa for isa in ("avx2", "avx512") if _core.isa_supported(isa)]
QK = 256


def _blocks(fmt, n, rng, fill):
    """n blocks whose every byte is `fill` (an int), or random (None), with the f16 fields sane."""
    raw = random_blocks(fmt, n, rng)
    blocks = raw.view(BLOCK_DTYPES[fmt])
    if fill is not None:
        f16 = {name for name, (t, _) in BLOCK_DTYPES[fmt].fields.items() if t == np.dtype("<f2")}
        for name in BLOCK_DTYPES[fmt].names:
            if name not in f16:
                blocks[name] = np.array(fill).astype(np.uint8).view(blocks[name].dtype)
    return raw, blocks


def _weight_cases(fmt, rows, nblocks, rng):
    n = rows * nblocks
    yield "all bits set", _blocks(fmt, n, rng, 0xFF)[0]
    yield "all zero", _blocks(fmt, n, rng, 0x00)[0]
    raw, blocks = _blocks(fmt, n, rng, None)
    if fmt == "q6_k":
        blocks["scales"] = np.where(rng.random(blocks["scales"].shape) < 0.5, -128, 127)
        yield "random quants, scales -128 / 127", raw.copy()
        blocks["ql"], blocks["qh"] = 0, 0  # every quant 0: value -32 * scale
        blocks["scales"] = -128
        yield "quants 0, scales -128", raw.copy()
    else:
        blocks["scales"] = 0xFF  # every 6-bit scale and min 63
        yield "random quants, scales and mins 63", raw.copy()
        blocks["qs"] = 0xFF
        if fmt == "q5_k":
            blocks["qh"] = 0xFF
        yield "max quants, scales and mins 63", raw.copy()


def _activation_cases(tokens, cols, rng):
    """Integers with |x| <= 127 and 127 in every block of 256: ActQ8_K quantizes them exactly (d = 1)."""
    yield "+127", np.full((tokens, cols), 127, np.float32)
    yield "-127", np.full((tokens, cols), -127, np.float32)
    alt = np.where(np.arange(cols) % 2 == 0, 127, -127).astype(np.float32)
    yield "+-127", np.tile(alt, (tokens, 1))
    x = rng.integers(-127, 128, size=(tokens, cols)).astype(np.float32)
    x[:, ::QK] = 127
    yield "random", x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_extreme_blocks_against_the_exact_product(fmt, isa):
    rng = np.random.default_rng(3)
    # an 8-token tile, a 4-token one and 2 single tokens, odd rows; with AMX, q4_k, q5_k and q6_k take
    # a 16-row tile there and the last 3 rows through the AVX-512 tiles
    rows, nblocks, tokens = 19, 3, 14
    cols = nblocks * QK
    for wname, raw in _weight_cases(fmt, rows, nblocks, rng):
        w = raw.reshape(rows, -1)
        wf = _core.dequantize_blocks(fmt, w).reshape(rows, cols).astype(np.float64)
        for xname, x in _activation_cases(tokens, cols, rng):
            exact = x.astype(np.float64) @ wf.T
            scale = np.abs(x).astype(np.float64) @ np.abs(wf).T  # the size of the terms summed
            got = _core.matmul(x, w, fmt, isa)
            np.testing.assert_allclose(got, exact, rtol=0, atol=1e-6 * scale.max() + 1e-30,
                                       err_msg=f"{fmt} {isa}: weights {wname}, activations {xname}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rows_result_does_not_depend_on_its_batch(fmt):
    """Bit for bit, as tests/test_kernels.py asks of the planar formats: a token goes through a
    4-token tile or the 1-token path depending on its place in the batch, and (AVX2's q4_k,
    q5_k) a call of 10 tokens or more through 8-row groups of interleaved quants (37 rows: the
    last group partial; 11 super-blocks: a lane of the accumulator takes a second one)."""
    rng = np.random.default_rng(7)
    rows, cols = 37, 11 * QK
    w = random_blocks(fmt, rows * cols // QK, rng).reshape(rows, -1)
    x = rng.standard_normal((23, cols)).astype(np.float32)
    for isa in ISAS:
        alone = np.stack([_core.matmul(x[i:i + 1], w, fmt, isa)[0] for i in range(23)])
        for n in (2, 3, 4, 5, 6, 7, 9, 14, 23):
            np.testing.assert_array_equal(_core.matmul(x[:n], w, fmt, isa), alone[:n],
                                          err_msg=f"{isa}, {n} rows")


AMX_FORMATS = ["q4_k", "q5_k", "q6_k"]
AMX_CASES = [(16, 1, 10), (37, 11, 17), (50, 6, 40)]


def _amx_case(fmt, rows, nblocks, tokens):
    rng = np.random.default_rng(rows * 100 + nblocks)
    w = random_blocks(fmt, rows * nblocks, rng).reshape(rows, -1)
    x = rng.standard_normal((tokens, nblocks * QK)).astype(np.float32)
    return w, x


def test_prefill_on_amx_is_the_same():
    """Where the CPU has AMX, q4_k, q5_k and q6_k calls of 10 tokens or more multiply whole 16-row
    tiles on it; rows that do not fill a tile take the AVX-512 tiles, with the same float steps
    (the formats' exact variant, which an AMX CPU uses throughout): 15 rows at a time must give
    the AMX tiles' bits. With R1LITE_AMX=0 the AVX-512 kernels use their lanes variant (other
    rounding): close, not equal."""
    if not (_core.isa_supported("avx512") and _core.cpu_features()["amx_int8"]):
        pytest.skip("needs AMX to compare the prefill paths")
    for fmt in AMX_FORMATS:
        for rows, nblocks, tokens in AMX_CASES:
            w, x = _amx_case(fmt, rows, nblocks, tokens)
            full = _core.matmul(x, w, fmt, "avx512")
            for r in range(0, rows - 14, 16):
                part = _core.matmul(x, np.ascontiguousarray(w[r:r + 15]), fmt, "avx512")
                np.testing.assert_array_equal(part, full[:, r:r + 15], err_msg=f"{fmt} {rows, nblocks, tokens}")
    script = (
        "import sys, numpy as np\n"
        "from r1lite import _core\n"
        "from test_kernels_kquants import AMX_FORMATS, AMX_CASES, _amx_case\n"
        "assert not _core.cpu_features()['amx_int8']\n"
        "out = {}\n"
        "for fmt in AMX_FORMATS:\n"
        "    for i, case in enumerate(AMX_CASES):\n"
        "        w, x = _amx_case(fmt, *case)\n"
        "        out[f'{fmt}{i}'] = _core.matmul(x, w, fmt, 'avx512')\n"
        "np.savez(sys.argv[1], **out)\n")
    lanes = arrays_in_a_child({"R1LITE_AMX": "0"}, script)
    for fmt in AMX_FORMATS:
        for i, case in enumerate(AMX_CASES):
            w, x = _amx_case(fmt, *case)
            got = _core.matmul(x, w, fmt, "avx512")
            np.testing.assert_allclose(got, lanes[f"{fmt}{i}"], rtol=0, atol=1e-5 * np.abs(got).max(),
                                       err_msg=f"{fmt} {case}")
