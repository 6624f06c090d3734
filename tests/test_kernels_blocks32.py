"""The SIMD kernels of GGUF's 32-value block formats (csrc/cpu/blocks32_avx2.cpp,
blocks32_avx512.cpp) beyond tests/test_block_formats.py: rows of whole 4-block groups plus a
partial one (the AVX-512 tile's step), extreme quants and scales against an exact product, and a
token's result bit for bit independent of its batch."""

import numpy as np
import pytest
from conftest import arrays_in_a_child

from r1lite import _core
from r1lite.formats.blocks import BLOCK_DTYPES, random_blocks

FORMATS32 = ["gguf_q8_0", "gguf_q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"]
ISAS = [isa for isa in ("avx2", "avx512") if _core.isa_supported(isa)]


def _weights(fmt, rows, blocks, rng):
    return random_blocks(fmt, rows * blocks, rng).reshape(rows, -1)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS32)
@pytest.mark.parametrize("rows,tokens,blocks", [(9, 1, 4), (6, 5, 5), (21, 1, 8), (7, 9, 13), (18, 4, 48), (5, 13, 70)])
def test_whole_groups_and_a_partial_one(fmt, isa, rows, tokens, blocks):
    rng = np.random.default_rng(rows * 1000 + blocks)
    w = _weights(fmt, rows, blocks, rng)
    x = rng.standard_normal((tokens, 32 * blocks)).astype(np.float32)
    want = _core.matmul(x, w, fmt, "scalar")
    got = _core.matmul(x, w, fmt, isa)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def _extreme_blocks(fmt, n, rng):
    """n blocks, each with every quant byte at its lowest or its highest (q5's fifth bits too),
    or random bytes, and a scale (and min) from tiny to the largest f16."""
    dt = BLOCK_DTYPES[fmt]
    blocks = np.zeros(n, dt)
    kind = rng.integers(0, 3, n)
    for field in ("qs", "qh"):
        if field in dt.names:
            width = dt[field].shape[0]
            raw = rng.integers(0, 256, (n, width)).astype(np.uint8)
            raw[kind == 0] = 0x00
            raw[kind == 1] = 0xFF
            if fmt == "gguf_q8_0":  # signed: -128 and 127 as the extremes
                raw[kind == 0] = 0x80
                raw[kind == 1] = 0x7F
            blocks[field] = raw.view(dt[field].base)
    for field in ("d", "m"):
        if field in dt.names:
            blocks[field] = rng.choice(np.array([65504.0, 1.0, 2.0 ** -14, 0.5, 1000.0], np.float16), n)
    return blocks.view(np.uint8)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS32)
def test_extremes_against_the_exact_product(fmt, isa):
    """Quants at their ends, scales up to 65504, activations at ±127: the integer dots must neither
    saturate nor wrap. Activations that are integers with a ±127 in every block quantize exactly
    (d = 1), so the exact product is the dequantized weights times x in float64."""
    rng = np.random.default_rng(3)
    rows, blocks, tokens = 19, 9, 14  # 16 rows and 10+ tokens: gguf_q8_0 through AMX where there is AMX
    w = _extreme_blocks(fmt, rows * blocks, rng).reshape(rows, -1)
    wf = _core.dequantize_blocks(fmt, w).reshape(rows, 32 * blocks).astype(np.float64)
    x = rng.choice(np.array([-127, 127, -126, 0, 1, -1], np.float32), (tokens, 32 * blocks))
    x[:2] = 127.0                                   # all at the top
    x[2] = np.where(np.arange(32 * blocks) % 2, 127.0, -127.0)  # alternating signs
    x[3] = -127.0
    x[:, ::32] = np.where(rng.random((tokens, blocks)) < 0.5, 127.0, -127.0)  # every block reaches 127
    exact = x.astype(np.float64) @ wf.T
    got = _core.matmul(x, w, fmt, isa)
    scale = np.abs(x).astype(np.float64) @ np.abs(wf).T  # the size of the terms summed
    assert np.all(np.abs(got - exact) <= 1e-5 * scale + 1e-30), np.max(np.abs(got - exact) / scale)


@pytest.mark.parametrize("fmt", FORMATS32)
def test_a_rows_result_does_not_depend_on_its_batch(fmt):
    """Bit for bit: a token goes through a 4-token tile or the 1-token path depending on its place
    in the batch, a row through a 4-row tile or a single-row one, and (AVX2's q4/q5 formats) a
    call of 10 tokens or more through the 8-row groups of interleaved quants, whose last group of
    the 37 rows is partial; all must round the same."""
    rng = np.random.default_rng(7)
    rows, blocks = 37, 75
    w = _weights(fmt, rows, blocks, rng)
    x = rng.standard_normal((23, 32 * blocks)).astype(np.float32)
    for isa in ISAS:
        alone = np.stack([_core.matmul(x[i:i + 1], w, fmt, isa)[0] for i in range(23)])
        for n in (2, 3, 4, 5, 6, 7, 9, 14, 23):
            np.testing.assert_array_equal(_core.matmul(x[:n], w, fmt, isa), alone[:n],
                                          err_msg=f"{isa}, {n} tokens")
        for n in (5, 11):
            some_rows = _core.matmul(x[:n], np.ascontiguousarray(w[3:8]), fmt, isa)
            np.testing.assert_array_equal(some_rows, alone[:n, 3:8], err_msg=f"{isa}, {n} tokens, rows 3-7")


def test_nibble_split_without_gfni_is_the_same():
    """The AVX-512 tile splits nibbles with GFNI where the CPU has it and with a shift elsewhere
    (R1LITE_GFNI=0 forces the shift): both must give the same bits."""
    if not (_core.isa_supported("avx512") and _core.cpu_features()["gfni"]):
        pytest.skip("needs AVX-512 and GFNI to compare the two nibble splits")
    fmts = [f for f in FORMATS32 if f != "gguf_q8_0"]
    script = (
        "import sys, numpy as np\n"
        "from r1lite import _core\n"
        "from r1lite.formats.blocks import random_blocks\n"
        "assert not _core.cpu_features()['gfni']\n"
        "out = {}\n"
        f"for fmt in {fmts!r}:\n"
        "    rng = np.random.default_rng(11)\n"
        "    w = random_blocks(fmt, 23 * 7, rng).reshape(23, -1)\n"
        "    x = rng.standard_normal((5, 32 * 7)).astype(np.float32)\n"
        "    out[fmt] = _core.matmul(x, w, fmt, 'avx512')\n"
        "np.savez(sys.argv[1], **out)\n")
    shifted = arrays_in_a_child({"R1LITE_GFNI": "0"}, script)
    for fmt in fmts:
        rng = np.random.default_rng(11)
        w = random_blocks(fmt, 23 * 7, rng).reshape(23, -1)
        x = rng.standard_normal((5, 32 * 7)).astype(np.float32)
        np.testing.assert_array_equal(_core.matmul(x, w, fmt, "avx512"), shifted[fmt], err_msg=fmt)


def _amx_case(rows, blocks, tokens):
    rng = np.random.default_rng(rows * 100 + blocks)
    w = _weights("gguf_q8_0", rows, blocks, rng)
    x = rng.standard_normal((tokens, 32 * blocks)).astype(np.float32)
    return w, x


AMX_CASES = [(16, 3, 10), (37, 48, 17), (50, 75, 40), (32, 16, 33)]


def test_q8_0_prefill_on_amx_is_the_same():
    """Where the CPU has AMX, gguf_q8_0 calls of 10 tokens or more multiply whole 16-row tiles on
    it (fewer lanes than blocks, a partial token tile, rows left over for the AVX-512 tiles); with
    R1LITE_AMX=0 the AVX-512 tiles do it all: both must give the same bits."""
    if not (_core.isa_supported("avx512") and _core.cpu_features()["amx_int8"]):
        pytest.skip("needs AMX to compare the two prefill paths")
    script = (
        "import sys, numpy as np\n"
        "from r1lite import _core\n"
        "from test_kernels_blocks32 import AMX_CASES, _amx_case\n"
        "assert not _core.cpu_features()['amx_int8']\n"
        "out = {}\n"
        "for i, case in enumerate(AMX_CASES):\n"
        "    w, x = _amx_case(*case)\n"
        "    out[str(i)] = _core.matmul(x, w, 'gguf_q8_0', 'avx512')\n"
        "np.savez(sys.argv[1], **out)\n")
    avx512 = arrays_in_a_child({"R1LITE_AMX": "0"}, script)
    for i, case in enumerate(AMX_CASES):
        w, x = _amx_case(*case)
        np.testing.assert_array_equal(_core.matmul(x, w, "gguf_q8_0", "avx512"), avx512[str(i)], err_msg=str(case))
