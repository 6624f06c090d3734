"""Encoders for GGUF's block formats: f32 matrices -> the blocks of formats/blocks.py (ggml's layouts).

quantize_blocks(fmt, w) returns the raw bytes [rows, row_bytes] of an f32 matrix w [rows, cols]
in one of the core's block formats. The math follows ggml's reference quantizers (the ones
llama-quantize uses when it has no importance matrix), so a file written by r1lite decodes like
one llama.cpp writes:

- gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1: one scale (and min) per 32 values from the block's
  extremes, ggml's rounding (q8_0 rounds halves away from zero; q4_0/q5_0/q4_1/q5_1 truncate
  x + 0.5 / x + 8.5 / x + 16.5). Bit-exact with the `gguf` package's quantizers.
- q4_k, q5_k, q2_k: per sub-block a scale and a min from a least-squares search over a few
  candidate scales (ggml's make_qkx2_quants: weights av|x|+|x| for q4_k/q5_k, |x| and absolute
  error for q2_k), the sub-block scales/mins then quantized to 6 (4) bits against the block's
  largest, and the values re-quantized with the stored scales.
- q6_k: symmetric 6-bit values, the sub-block scale from ggml's make_qx_quants search (x^2
  weights, 19 candidate scales), 8-bit sub-block scales.
- q3_k: symmetric 3-bit values, the sub-block scale from ggml's make_q3_quants (coordinate
  descent on the x^2-weighted error, up to 5 sweeps), 6-bit sub-block scales.
- iq4_nl, iq4_xs: the non-linear 4-bit grid with ggml's scale search (x^2 weights, 15 candidates).
- iq2_xxs, iq2_xs, iq2_s: r1lite's own codebook search (iq2_quantizers.py), not ggml's: its bytes
  differ from llama-quantize's, its error is compared in tests/test_iq2_quantizers.py.

With an importance matrix (quantize_blocks(..., importance=...), llama-quantize --imatrix) the
K-quants follow ggml's weighted paths instead: every value weighted by its column's mean squared
activation times sqrt(sigma^2 + x^2); q2_k/q4_k/q5_k fit each sub-block with make_qkx3_quants and
the sub-block scales and mins with make_qp_quants, q3_k both levels with make_qx_quants, q6_k
make_qx_quants weighted by the importance itself.

Everything is vectorized over all blocks of the matrix (numpy, float32 as ggml computes); the
loops run only over the fixed search steps, in chunks of blocks that stay in cache (and on
several threads). The sums of each search accumulate in the order ggml's loops do (element 0
first) and every product is formed in ggml's order, so the bytes are those ggml's reference
quantizers write: tests/test_block_quantizers.py checks every format byte for byte against
libggml-base's ggml_quantize_chunk where a llama.cpp build is at hand.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..quant import TABLE
from . import iq2_quantizers
from .blocks import BLOCK_DTYPES

QK_K = 256
_EPS = np.float32(1e-15)  # ggml's GROUP_MAX_EPS: a group below it is all zeros
_F = np.float32

IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        np.float32)

# values per block of each block format, from the core's table
BLOCK_SIZES = {name: f["block"] for name, f in TABLE.items() if f["layout"] == "blocks"}


# block formats r1lite reads (GGUF files) but does not write yet: these i-quants need their own
# codebook searches (issue 20; iq2's are in iq2_quantizers.py)
READ_ONLY = frozenset({"iq1_s", "iq1_m", "iq3_xxs", "iq3_s"})


def quantize_blocks(fmt: str, w: np.ndarray, threads: int | None = None,
                    importance: np.ndarray | None = None) -> np.ndarray:
    """The blocks of `fmt` (raw bytes, uint8 [rows, row_bytes]) encoding the f32 matrix w
    [rows, cols]; cols must be a multiple of the format's block (32 or 256 values).
    threads: how many threads encode chunks of blocks at once (numpy drops the GIL in its
    loops); None: the CPUs this process may use, at most 8. The result does not depend on it.
    importance: an importance matrix's weights for this matrix (the mean squared input of each
    column, [cols], or [groups, cols] for row groups of equal size such as MLA's heads): the
    K-quants q2_k..q6_k then minimize the importance-weighted error as ggml's quantize_q*_K
    do with quant_weights (llama-quantize --imatrix), and the 2-bit i-quants weight their
    codebook search by it (iq2_quantizers.py); other formats ignore it."""
    if fmt not in _ENCODERS:
        raise ValueError(f"no block quantizer for format {fmt!r} (have: {', '.join(_ENCODERS)})")
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"{fmt}: expected a matrix [rows, cols], got shape {w.shape}")
    rows, cols = w.shape
    block = BLOCK_SIZES[fmt]
    if cols % block:
        raise ValueError(f"{fmt}: width {cols} is not a multiple of its block of {block} values")
    qw = None
    if importance is not None and fmt in _WEIGHTED:
        qw = np.asarray(importance, np.float32)
        qw = qw.reshape(1, -1) if qw.ndim == 1 else qw
        if qw.ndim != 2 or qw.shape[1] != cols or rows % qw.shape[0]:
            raise ValueError(f"{fmt}: importance of shape {np.shape(importance)} does not fit a "
                             f"matrix [{rows}, {cols}]")
        if not (np.isfinite(qw).all() and (qw >= 0).all()):
            raise ValueError(f"{fmt}: the importance has values that are negative or not finite")
        qw = qw.reshape(qw.shape[0], cols // block, block)
    dt = BLOCK_DTYPES[fmt]
    out = np.zeros(rows * (cols // block), dt)
    if out.size == 0:
        return out.view(np.uint8).reshape(rows, (cols // block) * dt.itemsize)
    x = np.ascontiguousarray(w).reshape(-1, block)  # blocks in the input's dtype
    encode, chunk = _ENCODERS[fmt]
    per_row = cols // block

    def run(s: int) -> None:  # one chunk of blocks, as f32, into its own slice of `out`
        xc = np.asarray(x[s:s + chunk], dtype=np.float32)
        if not np.isfinite(xc).all():
            raise ValueError(f"{fmt}: the matrix has values that are not finite (nan or inf)")
        if qw is None:
            encode(xc, out[s:s + chunk])
        else:  # each block's importance: its row's group, its column range
            ids = np.arange(s, s + len(xc))
            row = ids // per_row
            _WEIGHTED[fmt](xc, out[s:s + chunk], qw[row // (rows // len(qw)), ids % per_row])

    starts = range(0, len(x), chunk)
    threads = min(len(starts), _default_threads() if threads is None else max(1, int(threads)))
    if threads == 1:
        for s in starts:
            run(s)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, starts))  # list(): re-raises a chunk's error
    return out.view(np.uint8).reshape(rows, -1)


def _default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


# ---------------------------------------------------------------------------------------------
# helpers


def _inv(d: np.ndarray) -> np.ndarray:
    """1/d where d != 0, else 0 (ggml's `id = d ? 1.0f/d : 0.0f`)."""
    out = np.zeros_like(d)
    np.divide(_F(1), d, out=out, where=d != 0)
    return out


def _round_away(v: np.ndarray) -> np.ndarray:
    """C's roundf: to nearest, halves away from zero (exact: v - trunc(v) is exact in f32)."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= _F(0.5), np.sign(v), _F(0))


def _signed_peak(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(the value of largest magnitude, its magnitude) along `axis`; the first of equal
    magnitudes, as ggml's `if (amax < fabsf(v))` scan picks."""
    ax = np.abs(x)
    idx = np.expand_dims(ax.argmax(axis=axis), axis)
    return (np.take_along_axis(x, idx, axis=axis).squeeze(axis),
            np.take_along_axis(ax, idx, axis=axis).squeeze(axis))


def _sum0(a: np.ndarray) -> np.ndarray:
    """Sum over axis 0, element 0 first (numpy adds the rows of axis 0 in order: ggml's loop)."""
    return np.add.reduce(a, axis=0)


def _subblocks_t(x: np.ndarray, n: int) -> np.ndarray:
    """Blocks x [B, 256] as sub-blocks of n values, transposed: [n, B*256/n] (value index first,
    so per-sub-block quantities are rows that broadcast and sums run over contiguous rows)."""
    return np.ascontiguousarray(x.reshape(-1, n).T)


def _from_subblocks_t(lt: np.ndarray, nblocks: int) -> np.ndarray:
    """The inverse of _subblocks_t for the quants: [n, B*256/n] -> uint8 [B, 256]."""
    return np.ascontiguousarray(lt.T).reshape(nblocks, -1).astype(np.uint8)


def _nearest_int(v: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: round to nearest, halves to even (the float magic-number trick)."""
    return np.rint(v)


def _pack_2bit(L: np.ndarray) -> np.ndarray:
    """ggml's 2-bit packing of 256 values (q2_K, q3_K low bits): byte 32h + l of each 128-value
    half h holds values l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7."""
    q = L.reshape(-1, 2, 4, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).reshape(-1, 64)


# ---------------------------------------------------------------------------------------------
# 32-value formats


def _enc_q8_0(x, out):
    amax = np.abs(x).max(axis=1)
    d = amax / _F(127)
    out["d"] = d.astype(np.float16)
    out["qs"] = _round_away(x * _inv(d)[:, None]).astype(np.int8)


def _pack_nibbles32(q: np.ndarray) -> np.ndarray:
    """Byte j of 16: value j in the low nibble, value j+16 in the high one."""
    return (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)


def _enc_q4_0(x, out):
    peak, _ = _signed_peak(x, 1)
    d = peak / _F(-8)
    out["d"] = d.astype(np.float16)
    q = np.minimum(_F(15), np.trunc(x * _inv(d)[:, None] + _F(8.5))).astype(np.uint8)
    out["qs"] = _pack_nibbles32(q)


def _enc_q5_0(x, out):
    peak, _ = _signed_peak(x, 1)
    d = peak / _F(-16)
    out["d"] = d.astype(np.float16)
    q = np.minimum(_F(31), np.trunc(x * _inv(d)[:, None] + _F(16.5))).astype(np.uint8)
    out["qs"] = _pack_nibbles32(q)
    out["qh"] = np.packbits((q >> 4) & 1, axis=1, bitorder="little")  # bit j: value j's 5th bit


def _enc_q4_1(x, out):
    lo, hi = x.min(axis=1), x.max(axis=1)
    d = (hi - lo) / _F(15)
    out["d"] = d.astype(np.float16)
    out["m"] = lo.astype(np.float16)
    q = np.minimum(_F(15), np.trunc((x - lo[:, None]) * _inv(d)[:, None] + _F(0.5))).astype(np.uint8)
    out["qs"] = _pack_nibbles32(q)


def _enc_q5_1(x, out):
    lo, hi = x.min(axis=1), x.max(axis=1)
    d = (hi - lo) / _F(31)
    out["d"] = d.astype(np.float16)
    out["m"] = lo.astype(np.float16)
    q = np.trunc((x - lo[:, None]) * _inv(d)[:, None] + _F(0.5)).astype(np.uint8)
    out["qs"] = _pack_nibbles32(q)
    out["qh"] = np.packbits((q >> 4) & 1, axis=1, bitorder="little")


# ---------------------------------------------------------------------------------------------
# K-quants: the sub-block searches, on transposed sub-blocks [n, M]


def _scale_min_search(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """ggml's make_qkx2_quants on every sub-block at once: x, w [n, M] (values, weights), quants
    0..nmax with x ~ scale*L - the_min. Starts from the range's scale, then tries the scales
    (nmax + rmin + rdelta*i)/range, i = 0..nstep, each fitted by weighted least squares (scale
    and min), keeping the one of least weighted squared (or absolute) error.
    Returns (scale [M], the_min [M], L [n, M] float32)."""
    nmax = _F(nmax)
    lo = np.minimum(x.min(axis=0), _F(0))
    hi = x.max(axis=0)
    flat = hi == lo
    tmp = np.multiply(w, x)
    sum_w, sum_x = _sum0(w), _sum0(tmp)
    La, wl = np.empty_like(x), np.empty_like(x)

    def quants(iscale, lo, out):  # clip(nearest_int(iscale*(x - lo)), 0, nmax)
        np.subtract(x, lo, out=out)
        np.multiply(out, iscale, out=out)
        np.rint(out, out=out)
        np.clip(out, _F(0), nmax, out=out)

    def error(scale, lo, L):  # sum of w*|scale*L + lo - x|^2 (or ^1)
        np.multiply(L, scale, out=tmp)
        np.add(tmp, lo, out=tmp)
        np.subtract(tmp, x, out=tmp)
        if use_mad:
            np.abs(tmp, out=tmp)
        else:
            np.multiply(tmp, tmp, out=tmp)
        return _sum0(np.multiply(tmp, w, out=tmp))

    def span():  # max - min (1 where flat: those end up all zeros)
        return np.where(flat, _F(1), hi - lo)

    # The quants are not kept during the search (a masked copy costs more than the rest):
    # the best candidate's inverse scale and the min it was rounded against are, and the
    # quants are rounded again from those at the end, the same numbers.
    iscale = nmax / span()
    scale = _F(1) / iscale
    quants(iscale, lo, La)
    best = error(scale, lo, La)
    best_iscale, best_lo = iscale, lo
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for step in range(nstep + 1):
            factor = _F(rmin) + _F(rdelta) * _F(step) + nmax
            iscale = factor / span()
            quants(iscale, lo, La)  # lo: the best fit's min so far, as in ggml's loop
            np.multiply(w, La, out=wl)
            sum_l = _sum0(wl)
            sum_l2 = _sum0(np.multiply(wl, La, out=tmp))
            sum_xl = _sum0(np.multiply(wl, x, out=tmp))
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            pos = this_min > 0
            this_min = np.where(pos, _F(0), this_min)
            this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
            cur = error(this_scale, this_min, La)
            better = (D > 0) & (cur < best) & ~flat
            best_iscale = np.where(better, iscale, best_iscale)
            best_lo = np.where(better, lo, best_lo)
            best = np.where(better, cur, best)
            scale = np.where(better, this_scale, scale)
            lo = np.where(better, this_min, lo)
    L = La
    quants(best_iscale, best_lo, L)
    scale = np.where(flat, _F(0), scale)
    L[:, flat] = 0
    return scale, -lo, L


def _symmetric_search(x, nmax, w=None):
    """ggml's make_qx_quants (rmse_type 1) on every sub-block: x [n, M], weights w [n, M] (None:
    x^2), quants -nmax..nmax-1 with x ~ scale*l. Tries the scales (nmax + 0.1*i)/peak,
    i = -9..9, each fitted by weighted least squares, keeping the best.
    Returns (scale [M], L [n, M] = l + nmax)."""
    nmax = _F(nmax)
    peak, amax = _signed_peak(x, 0)
    zero = amax < _EPS
    peak = np.where(zero, _F(1), peak)
    w = x * x if w is None else w
    wx = w * x
    l, tmp = np.empty_like(x), np.empty_like(x)

    def fit(iscale, l):
        np.multiply(x, iscale, out=l)
        np.rint(l, out=l)
        np.clip(l, -nmax, nmax - _F(1), out=l)
        sumlx = _sum0(np.multiply(wx, l, out=tmp))
        np.multiply(w, l, out=tmp)
        return sumlx, _sum0(np.multiply(tmp, l, out=tmp))

    with np.errstate(divide="ignore", invalid="ignore"):
        # as in _scale_min_search, the best inverse scale is kept and its quants made at the end
        best_iscale = -nmax / peak
        sumlx, suml2 = fit(best_iscale, l)
        scale = np.where(suml2 != 0, sumlx / suml2, _F(0))
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(nmax + _F(0.1) * _F(step)) / peak
            sumlx, suml2 = fit(iscale, l)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            best_iscale = np.where(better, iscale, best_iscale)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
    L = l
    fit(best_iscale, L)
    L += nmax
    scale = np.where(zero, _F(0), scale)
    L[:, zero] = 0
    return scale, L


def _q3_search(x):
    """ggml's make_q3_quants (nmax 4, rmse on): x [n, M]; quants -4..3 from the peak's scale,
    then up to 5 sweeps of coordinate descent, each value moved to the level that the least-
    squares scale of the others asks for when that lowers the x^2-weighted error.
    Returns (scale [M], L [n, M] = l + 4)."""
    nmax = _F(4)
    peak, amax = _signed_peak(x, 0)
    zero = amax < _EPS
    peak = np.where(zero, _F(1), peak)
    L = np.clip(_nearest_int((-nmax / peak) * x), -nmax, nmax - _F(1))
    w = x * x
    wx = w * x
    sumlx = _sum0(wx * L)
    suml2 = _sum0(w * L * L)
    # A sub-block that changes nothing in a sweep would change nothing in the next (ggml stops
    # it there), so each sweep after the first runs on the sub-blocks the last one changed.
    active = None  # all
    xa, wa, wxa, La, slxa, sl2a = x, w, wx, L, sumlx, suml2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(5):
            changed = np.zeros(La.shape[1], bool)
            for i in range(x.shape[0]):
                Li = La[i]
                slx = slxa - wxa[i] * Li
                sl2 = sl2a - wa[i] * Li * Li
                new_l = np.clip(_nearest_int(xa[i] * sl2 / slx), -nmax, nmax - _F(1))
                slx_new = slx + wxa[i] * new_l
                sl2_new = sl2 + wa[i] * new_l * new_l
                accept = ((slx > 0) & (new_l != Li) & (sl2_new > 0)
                          & (slx_new * slx_new * sl2a > slxa * slxa * sl2_new))
                np.copyto(Li, new_l, where=accept)
                slxa = np.where(accept, slx_new, slxa)
                sl2a = np.where(accept, sl2_new, sl2a)
                changed |= accept
            if active is None:
                sumlx, suml2 = slxa, sl2a
                active = np.flatnonzero(changed)
            else:
                L[:, active], sumlx[active], suml2[active] = La, slxa, sl2a
                keep = np.flatnonzero(changed)
                active = active[keep]
            if not len(active):
                break
            xa, wa, wxa = x[:, active], w[:, active], wx[:, active]
            La, slxa, sl2a = L[:, active], sumlx[active], suml2[active]
        scale = np.where(suml2 > 0, sumlx / suml2, _F(0))
    L += nmax
    scale = np.where(zero, _F(0), scale)
    L[:, zero] = 0
    return scale, L


def _requantize(xt, L, d, dm, lo, hi):
    """Where the stored sub-block scale d [M] is nonzero, the quants of xt [n, M] again against
    it (with offset dm, or None): clip(round((x + dm)/d), lo, hi); elsewhere L stays."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = xt + dm if dm is not None else xt
        q = np.clip(_nearest_int(v / d), _F(lo), _F(hi))
    np.copyto(L, q, where=d != 0)
    return L


def _store_k45_quants(out: dict, xt, L, d16, dmin16, scales, mins, B: int, nmax: int) -> None:
    """q4_k / q5_k: the values requantized with the stored f16 scales and 6-bit sub-block
    scales / mins, packed: 64 values per 32 bytes of qs (value l of the first half in the low
    nibble, of the second in the high one); q5_k's 5th bits in qh (bit 2c (+1) of qh[l] for
    value l of chunk c's first (second) half)."""
    d = (d16.astype(np.float32)[:, None] * scales).reshape(-1)
    dm = (dmin16.astype(np.float32)[:, None] * mins).reshape(-1)
    L = _from_subblocks_t(_requantize(xt, L, d, dm, 0, nmax), B).reshape(B, 4, 2, 32)
    out["qs"] = ((L[:, :, 0] & 0x0F) | ((L[:, :, 1] & 0x0F) << 4)).reshape(B, 128)
    if nmax == 31:
        hb = (L >> 4).astype(np.uint8)
        shifts = (2 * np.arange(4)[:, None] + np.arange(2)[None, :]).astype(np.uint8)
        out["qh"] = (hb << shifts[None, :, :, None]).sum(axis=(1, 2), dtype=np.uint8)


def _six_bit(values, peak):
    """Sub-block scales or mins [B, 8] -> 6-bit codes against their block's largest (ggml: the
    nearest int of 63*v/peak, as uint8, at most 63)."""
    inv = np.where(peak > 0, _F(63) / np.where(peak > 0, peak, _F(1)), _F(0))
    codes = _nearest_int(inv[:, None] * values).astype(np.int64) & 0xFF
    return np.minimum(codes, 63).astype(np.uint8)


def _pack_scales_k4(ls, lm):
    """q4_K/q5_K's 12 scale bytes from 6-bit scales ls and mins lm [B, 8]: bytes 0-3 scales 0-3,
    bytes 4-7 mins 0-3 (their top 2 bits: the high bits of scales/mins 4-7), bytes 8-11 the
    low nibbles of scale j (low) and min j (high), j = 4..7."""
    out = np.empty((len(ls), 12), np.uint8)
    out[:, 0:4] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
    out[:, 4:8] = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:] & 0x0F) | ((lm[:, 4:] & 0x0F) << 4)
    return out


def _enc_k_scale_min(x, out, nmax, rmin, nstep):
    """q4_K (nmax 15) and q5_K (nmax 31): 8 sub-blocks of 32 with 6-bit scales and mins."""
    B = len(x)
    xt = _subblocks_t(x, 32)
    av = np.sqrt(_sum0(xt * xt) / _F(32))
    w = av + np.abs(xt)
    scales, mins, L = _scale_min_search(xt, w, nmax, rmin, 0.1, nstep, False)
    scales, mins = scales.reshape(B, 8), mins.reshape(B, 8)
    max_scale = np.maximum(scales.max(axis=1), _F(0))
    max_min = np.maximum(mins.max(axis=1), _F(0))
    ls, lm = _six_bit(scales, max_scale), _six_bit(mins, max_min)
    d16 = (max_scale / _F(63)).astype(np.float16)
    dmin16 = (max_min / _F(63)).astype(np.float16)
    out["d"], out["dmin"] = d16, dmin16
    out["scales"] = _pack_scales_k4(ls, lm)
    _store_k45_quants(out, xt, L, d16, dmin16, ls, lm, B, nmax)


def _enc_q4_k(x, out):
    _enc_k_scale_min(x, out, 15, -1.0, 20)


def _enc_q5_k(x, out):
    _enc_k_scale_min(x, out, 31, -0.5, 15)


def _enc_q2_k(x, out):
    """16 sub-blocks of 16: 2-bit quants, a 4-bit scale and 4-bit min each (absolute error)."""
    B = len(x)
    xt = _subblocks_t(x, 16)
    scales, mins, L = _scale_min_search(xt, np.abs(xt), 3, -0.5, 0.1, 15, True)
    scales, mins = scales.reshape(B, 16), mins.reshape(B, 16)
    max_scale = np.maximum(scales.max(axis=1), _F(0))
    max_min = np.maximum(mins.max(axis=1), _F(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.where(max_scale[:, None] > 0, _nearest_int((_F(15) / max_scale)[:, None] * scales), 0)
        lm = np.where(max_min[:, None] > 0, _nearest_int((_F(15) / max_min)[:, None] * mins), 0)
    ls = ls.astype(np.int64) & 0xFF
    lm = lm.astype(np.int64) & 0xFF
    sc = (ls | (lm << 4)).astype(np.uint8)  # as ggml stores them: bytes, low nibble the scale
    d16 = np.where(max_scale > 0, max_scale / _F(15), _F(0)).astype(np.float16)
    dmin16 = np.where(max_min > 0, max_min / _F(15), _F(0)).astype(np.float16)
    out["scales"], out["d"], out["dmin"] = sc, d16, dmin16
    d = (d16.astype(np.float32)[:, None] * (sc & 0x0F)).reshape(-1)
    dm = (dmin16.astype(np.float32)[:, None] * (sc >> 4)).reshape(-1)
    L = _from_subblocks_t(_requantize(xt, L, d, dm, 0, 3), B)
    out["qs"] = _pack_2bit(L)


def _enc_q3_k(x, out):
    """16 sub-blocks of 16: symmetric 3-bit quants (low 2 bits in qs, the 3rd in hmask), 6-bit
    signed sub-block scales."""
    B = len(x)
    xt = _subblocks_t(x, 16)
    scales, L = _q3_search(xt)
    scales = scales.reshape(B, 16)
    max_scale, _ = _signed_peak(scales, 1)
    has = max_scale != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(has, _F(-32) / np.where(has, max_scale, _F(1)), _F(0))
        l = np.clip(_nearest_int(iscale[:, None] * scales), -32, 31).astype(np.int64) + 32
        d16 = np.where(has, _F(1) / iscale, _F(0)).astype(np.float16)
    l = np.where(has[:, None], l, 0).astype(np.uint8)  # no scale: ggml leaves the bytes zero
    packed = np.empty((B, 12), np.uint8)
    packed[:, :8] = (l[:, :8] & 0x0F) | ((l[:, 8:] & 0x0F) << 4)
    hi = (l >> 4).reshape(B, 4, 4)  # [group j//4, j%4]
    packed[:, 8:] = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)
    out["scales"], out["d"] = packed, d16
    sc = l.astype(np.float32) - _F(32)
    d = (d16.astype(np.float32)[:, None] * sc).reshape(-1)
    d = np.where(np.repeat(has, 16), d, _F(0))
    Lq = _requantize(xt, L, d, None, -4, 3)
    Lq[:, d != 0] += _F(4)
    L = _from_subblocks_t(Lq, B)
    # the 3rd bit: hmask[m] bit g for value 32g + m
    hb = (L > 3).astype(np.uint8).reshape(B, 8, 32)
    out["hmask"] = (hb << np.arange(8, dtype=np.uint8)[None, :, None]).sum(axis=1, dtype=np.uint8)
    out["qs"] = _pack_2bit(L & 3)


def _enc_q6_k(x, out, w=None):
    """16 sub-blocks of 16: symmetric 6-bit quants (low 4 bits in ql, top 2 in qh), int8
    sub-block scales. w: the search's weights per value, as sub-blocks (None: x^2)."""
    B = len(x)
    xt = _subblocks_t(x, 16)
    scales, L = _symmetric_search(xt, 32, w)
    scales = scales.reshape(B, 16)
    max_scale, max_abs = _signed_peak(scales, 1)
    zero = max_abs < _EPS  # ggml writes an all-zero block
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(zero, _F(0), _F(-128) / np.where(zero, _F(1), max_scale))
        d16 = np.where(zero, _F(0), _F(1) / iscale).astype(np.float16)
    sc = np.minimum(_nearest_int(iscale[:, None] * scales), _F(127)).astype(np.int8)
    out["d"], out["scales"] = d16, sc
    d = (d16.astype(np.float32)[:, None] * sc).reshape(-1)
    Lq = _requantize(xt, L, d, None, -32, 31)
    Lq[:, d != 0] += _F(32)
    Lq[:, np.repeat(zero, 16)] = 0
    L = _from_subblocks_t(Lq, B).reshape(B, 2, 4, 32)  # [half, quarter, l]
    lo = L & 0x0F
    ql = np.empty((B, 2, 2, 32), np.uint8)
    ql[:, :, 0] = lo[:, :, 0] | (lo[:, :, 2] << 4)
    ql[:, :, 1] = lo[:, :, 1] | (lo[:, :, 3] << 4)
    hi = L >> 4
    out["ql"] = ql.reshape(B, 128)
    out["qh"] = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(B, 64)


# ---------------------------------------------------------------------------------------------
# non-linear 4-bit (IQ4_NL, IQ4_XS): ggml's quantize_row_iq4_nl_impl without an importance
# matrix (x^2 weights, ntry 7: what llama-quantize writes)

# The nearest level of the grid, ties to the upper one (ggml's best_index_int8), read from a
# table by floor(2v): v is at or past the midpoint m of two levels a, b exactly when
# floor(2v) >= a + b (an integer). Near a midpoint ggml's own comparison is exact too.
_IQ4_SUMS = (IQ4NL_VALUES[1:] + IQ4NL_VALUES[:-1]).astype(np.int64)  # 2x the midpoints
_IQ4_HALF = 256  # floor(2v) is clipped to [-256, 256]: beyond every midpoint
_IQ4_INDEX = (np.arange(-_IQ4_HALF, _IQ4_HALF + 1)[:, None] >= _IQ4_SUMS[None, :]).sum(axis=1).astype(np.uint8)
_IQ4_LEVEL = IQ4NL_VALUES[_IQ4_INDEX]


def _iq4_slot(v2: np.ndarray) -> np.ndarray:
    """Table rows for 2*v (v2): floor, clipped, as an index."""
    k = np.floor(v2)
    np.clip(k, _F(-_IQ4_HALF), _F(_IQ4_HALF), out=k)
    return k.astype(np.intp) + _IQ4_HALF


def _iq4_index(v: np.ndarray) -> np.ndarray:
    """ggml's best_index_int8 over the IQ4_NL grid: the nearest level, the upper one on a tie."""
    return _IQ4_INDEX[_iq4_slot(v * _F(2))]


def _iq4_search(x, ntry=7):
    """Per sub-block x [32, M]: the least-squares scale over the grid for the candidate inverse
    scales (itry + values[0])/peak, itry = -ntry..ntry, and the first guess -peak/values[0].
    Returns scale [M]."""
    vals = IQ4NL_VALUES
    peak, amax = _signed_peak(x, 0)
    zero = amax < _EPS
    peak = np.where(zero, _F(1), peak)
    w = x * x
    tmp, wq = np.empty_like(x), np.empty_like(x)

    def fit(inv):  # (sum w*q*x, sum w*q*q) for the levels q nearest to inv*x
        np.multiply(x, inv * _F(2), out=tmp)  # (2 inv) x = 2 (inv x) exactly
        q = _IQ4_LEVEL[_iq4_slot(tmp)]
        np.multiply(w, q, out=wq)  # ggml's order: (w*q)*x, (w*q)*q
        sumqx = _sum0(np.multiply(wq, x, out=tmp))
        return sumqx, _sum0(np.multiply(wq, q, out=tmp))

    with np.errstate(divide="ignore", invalid="ignore"):
        d = -peak / vals[0]
        sumqx, sumq2 = fit(_F(1) / d)
        d = np.where(sumq2 > 0, sumqx / sumq2, _F(0))
        best = d * sumqx
        for itry in range(-ntry, ntry + 1):
            sumqx, sumq2 = fit(_F(itry + vals[0]) / peak)
            better = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
            d = np.where(better, sumqx / sumq2, d)
            best = np.where(better, d * sumqx, best)
    return np.where(zero, _F(0), d)


def _pack_iq4(L: np.ndarray) -> np.ndarray:
    """32 indices -> 16 bytes per 32 values: value j low nibble, value j+16 high."""
    q = L.reshape(-1, 2, 16)
    return (q[:, 0] | (q[:, 1] << 4)).reshape(len(L), -1)


def _enc_iq4_nl(x, out):
    xt = np.ascontiguousarray(x.T)
    d = _iq4_search(xt)
    out["d"] = d.astype(np.float16)
    L = _iq4_index(_inv(d) * xt)
    out["qs"] = _pack_iq4(np.ascontiguousarray(L.T))


def _enc_iq4_xs(x, out):
    B = len(x)
    xt = _subblocks_t(x, 32)
    scales = _iq4_search(xt)
    scales = scales.reshape(B, 8)
    max_scale, _ = _signed_peak(scales, 1)
    d = -max_scale / _F(32)
    out["d"] = d.astype(np.float16)
    l = np.clip(_nearest_int(_inv(d)[:, None] * scales), -32, 31)
    dl = (d[:, None] * l).reshape(-1)
    L = _from_subblocks_t(_iq4_index(_inv(dl) * xt), B)
    codes = (l + 32).astype(np.uint8)
    out["scales_l"] = ((codes[:, 0::2] & 0x0F) | ((codes[:, 1::2] & 0x0F) << 4))
    hi = (codes >> 4).astype(np.uint16)
    out["scales_h"] = (hi << (2 * np.arange(8, dtype=np.uint16))[None, :]).sum(axis=1, dtype=np.uint16)
    out["qs"] = _pack_iq4(L.reshape(B * 8, 32)).reshape(B, 128)


# format -> (encoder of blocks [N, block] into out[N], blocks per chunk)
_ENCODERS = {
    "gguf_q8_0": (_enc_q8_0, 1 << 15),
    "gguf_q4_0": (_enc_q4_0, 1 << 15),
    "q4_1": (_enc_q4_1, 1 << 15),
    "q5_0": (_enc_q5_0, 1 << 15),
    "q5_1": (_enc_q5_1, 1 << 15),
    "q4_k": (_enc_q4_k, 512),
    "q5_k": (_enc_q5_k, 512),
    "q6_k": (_enc_q6_k, 512),
    "q3_k": (_enc_q3_k, 2048),
    "q2_k": (_enc_q2_k, 512),
    "iq4_nl": (_enc_iq4_nl, 4096),
    "iq4_xs": (_enc_iq4_xs, 512),
    "iq2_xxs": (functools.partial(iq2_quantizers.encode, "iq2_xxs"), 16),
    "iq2_xs": (functools.partial(iq2_quantizers.encode, "iq2_xs"), 16),
    "iq2_s": (functools.partial(iq2_quantizers.encode, "iq2_s"), 8),
}


# ---------------------------------------------------------------------------------------------
# K-quants with an importance matrix: ggml's quantize_row_q*_K_impl with quant_weights (what
# llama-quantize --imatrix writes). Every encoder takes the blocks x [B, 256] and the
# importance qw [B, 256] of each value's column.


def _wrap_u8(v: np.ndarray) -> np.ndarray:
    """An int stored into ggml's uint8 L[] (modulo 256), as a float."""
    return np.mod(v, _F(256))


def _qp_search(x, w, nmax):
    """ggml's make_qp_quants on every group: x [n, M] (sub-block scales or mins), weights
    w [n, M]; quants 0..nmax with x ~ scale*l. The scale from the group's max, then the best of
    (nmax + 0.1*i)/max, i = -4..4 by weighted squared error, then up to 5 sweeps of
    coordinate descent as in make_q3_quants. Returns (scale [M], L [n, M] as uint8)."""
    nmax = _F(nmax)
    mx = np.maximum(x.max(axis=0), _F(0))
    zero = mx < _EPS
    mx = np.where(zero, _F(1), mx)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = nmax / mx
        L = _wrap_u8(_nearest_int(iscale * x))
        diff = x - (_F(1) / iscale) * L
        best = _sum0(w * diff * diff)
        for step in range(-4, 5):
            if step == 0:
                continue
            iscale_is = (_F(0.1) * _F(step) + nmax) / mx
            l = np.minimum(nmax, _nearest_int(iscale_is * x))
            diff = x - (_F(1) / iscale_is) * l
            mse = _sum0(w * diff * diff)
            better = mse < best
            best = np.where(better, mse, best)
            iscale = np.where(better, iscale_is, iscale)
        l = np.minimum(nmax, _nearest_int(iscale * x))
        L = _wrap_u8(l)
        wx = w * x
        sumlx = _sum0(wx * l)
        suml2 = _sum0(w * l * l)
        for _ in range(5):  # a group that changed nothing would change nothing again
            for i in range(x.shape[0]):
                Li = L[i]
                slx = sumlx - wx[i] * Li
                sl2 = suml2 - w[i] * Li * Li
                new_l = np.minimum(nmax, _nearest_int(x[i] * sl2 / slx))
                slx_new = slx + wx[i] * new_l
                sl2_new = sl2 + w[i] * new_l * new_l
                accept = ((slx > 0) & (sl2 > 0) & (new_l != Li)
                          & (slx_new * slx_new * suml2 > sumlx * sumlx * sl2_new))
                L[i] = np.where(accept, _wrap_u8(new_l), Li)
                sumlx = np.where(accept, slx_new, sumlx)
                suml2 = np.where(accept, sl2_new, suml2)
        scale = np.where(suml2 > 0, sumlx / suml2, _F(0))
    L[:, zero] = 0
    return np.where(zero, _F(0), scale), L.astype(np.uint8)


def _block_sigma2(x, factor):
    """factor * (sum of x^2 over each block's 256 values, element 0 first) / 256, as [B]."""
    xt = np.ascontiguousarray(x.T)
    return _F(factor) * _sum0(xt * xt) / _F(QK_K)


def _weighted_subblocks(x, qw, n, sigma2):
    """Sub-blocks of n (transposed, [n, B*256/n]) of x, and ggml's weights
    qw * sqrt(sigma2 + x^2) for them."""
    xt, qwt = _subblocks_t(x, n), _subblocks_t(qw, n)
    sig = np.repeat(sigma2, QK_K // n)[None, :]
    return xt, qwt * np.sqrt(sig + xt * xt)


def _unpack_scales_k4(q):
    """ggml's get_scale_min_k4 for all 8 sub-blocks: 12 scale bytes [B, 12] -> (scales, mins)
    [B, 8] (what a reader decodes, also from bytes a wrapped code left over 63)."""
    sc = np.empty((len(q), 8), np.uint8)
    mn = np.empty((len(q), 8), np.uint8)
    sc[:, :4], mn[:, :4] = q[:, 0:4] & 63, q[:, 4:8] & 63
    sc[:, 4:] = (q[:, 8:12] & 0x0F) | ((q[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (q[:, 8:12] >> 4) | ((q[:, 4:8] >> 6) << 4)
    return sc, mn


def _wenc_k_scale_min(x, out, qw, nmax):
    """q4_K (nmax 15) / q5_K (nmax 31) with importance: make_qkx3_quants per sub-block of 32,
    then make_qp_quants for the 6-bit scales and mins (weighted by the sub-blocks' weights)."""
    B = len(x)
    xt, w = _weighted_subblocks(x, qw, 32, _block_sigma2(x, 2))
    sw = _sum0(w)
    scales, mins, L = _scale_min_search(xt, w, nmax, -0.9, 0.05, 36, False)
    sw8 = np.ascontiguousarray(sw.reshape(B, 8).T)
    d_block, ls = _qp_search(np.ascontiguousarray(scales.reshape(B, 8).T), sw8, 63)
    m_block, lm = _qp_search(np.ascontiguousarray(mins.reshape(B, 8).T), sw8, 63)
    ls, lm = np.ascontiguousarray(ls.T), np.ascontiguousarray(lm.T)
    if nmax == 31:
        ls, lm = np.minimum(ls, 63), np.minimum(lm, 63)
    packed = _pack_scales_k4(ls, lm)
    d16, dmin16 = d_block.astype(np.float16), m_block.astype(np.float16)
    out["d"], out["dmin"], out["scales"] = d16, dmin16, packed
    sc, mn = _unpack_scales_k4(packed)
    _store_k45_quants(out, xt, L, d16, dmin16, sc, mn, B, nmax)


def _wenc_q4_k(x, out, qw):
    _wenc_k_scale_min(x, out, qw, 15)


def _wenc_q5_k(x, out, qw):
    _wenc_k_scale_min(x, out, qw, 31)


def _wenc_q2_k(x, out, qw):
    """q2_K with importance: make_qkx3_quants (squared error) per sub-block of 16, then
    make_qp_quants for the 4-bit scales and mins."""
    B = len(x)
    xt, w = _weighted_subblocks(x, qw, 16, _block_sigma2(x, 1))
    sw16 = np.ascontiguousarray(_sum0(w).reshape(B, 16).T)
    scales, mins, L = _scale_min_search(xt, w, 3, -0.9, 0.05, 36, False)
    dm, ls = _qp_search(np.ascontiguousarray(scales.reshape(B, 16).T), sw16, 15)
    mm, lm = _qp_search(np.ascontiguousarray(mins.reshape(B, 16).T), sw16, 15)
    sc = np.ascontiguousarray((ls | (lm << 4)).T)  # uint8, as ggml stores it
    d16, dmin16 = dm.astype(np.float16), mm.astype(np.float16)
    out["scales"], out["d"], out["dmin"] = sc, d16, dmin16
    d = (d16.astype(np.float32)[:, None] * (sc & 0x0F)).reshape(-1)
    m = (dmin16.astype(np.float32)[:, None] * (sc >> 4)).reshape(-1)
    out["qs"] = _pack_2bit(_from_subblocks_t(_requantize(xt, L, d, m, 0, 3), B))


def _wenc_q3_k(x, out, qw):
    """q3_K with importance: make_qx_quants (nmax 4) per sub-block of 16, then make_qx_quants
    (nmax 32) for the 6-bit sub-block scales, both weighted."""
    B = len(x)
    xt, w = _weighted_subblocks(x, qw, 16, _block_sigma2(x, 2))
    sw16 = np.ascontiguousarray(_sum0(w).reshape(B, 16).T)
    scales, L = _symmetric_search(xt, 4, w)
    d_block, Ls = _symmetric_search(np.ascontiguousarray(scales.reshape(B, 16).T), 32, sw16)
    l = np.ascontiguousarray(Ls.T).astype(np.uint8)  # [B, 16], 0..63 (all 0 for a zero block)
    packed = np.empty((B, 12), np.uint8)
    packed[:, :8] = (l[:, :8] & 0x0F) | ((l[:, 8:] & 0x0F) << 4)
    hi = (l >> 4).reshape(B, 4, 4)
    packed[:, 8:] = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)
    d16 = d_block.astype(np.float16)
    out["scales"], out["d"] = packed, d16
    d = (d16.astype(np.float32)[:, None] * (l.astype(np.float32) - _F(32))).reshape(-1)
    Lq = _requantize(xt, L, d, None, -4, 3)
    Lq[:, d != 0] += _F(4)
    L = _from_subblocks_t(Lq, B)
    hb = (L > 3).astype(np.uint8).reshape(B, 8, 32)
    out["hmask"] = (hb << np.arange(8, dtype=np.uint8)[None, :, None]).sum(axis=1, dtype=np.uint8)
    out["qs"] = _pack_2bit(L & 3)


def _wenc_q6_k(x, out, qw):
    """q6_K with importance: make_qx_quants weighted by the importance itself."""
    _enc_q6_k(x, out, _subblocks_t(qw, 16))


# format -> encoder of blocks x [N, 256] with their importance qw [N, 256] into out[N]
_WEIGHTED = {"q2_k": _wenc_q2_k, "q3_k": _wenc_q3_k, "q4_k": _wenc_q4_k, "q5_k": _wenc_q5_k,
             "q6_k": _wenc_q6_k,
             **{f: functools.partial(iq2_quantizers.encode, f) for f in iq2_quantizers.GROUPS_PER_SUB}}
