"""Encoders for GGUF's 2-bit i-quants: iq2_xxs, iq2_xs, iq2_s (layouts: formats/blocks.py,
core/blocks.h). r1lite's own search, written from the published block definitions:

A block of 256 values is 32 groups of 8. A group stores one entry g of the format's codebook
(8 magnitudes from {8, 25, 43}; 256, 512 or 1024 entries) and 8 signs; a sub-block (32 values,
4 groups, for iq2_xxs; 16 values, 2 groups, for iq2_xs / iq2_s) a 4-bit scale l; the block an
f16 d. A value decodes as sigma * g_j * sign_j with sigma = d * (2l + 1) / 8.

The encoder minimizes the weighted squared error sum_j w_j (x_j - sigma g_j s_j)^2:

1. Signs. iq2_s stores all 8; iq2_xxs / iq2_xs store 7 and the 8th makes the count of negative
   signs even. When x has an odd count, the value of least w x^2 gets the wrong sign: its target
   magnitude becomes -|x| (the best entry then gives it the smallest magnitude it can).
2. Codebook entries, exactly: with a = the target magnitudes, the error of entry g at scale sigma
   is sigma^2 sum(w g^2) - 2 sigma sum(w a g) + const, so two small matrix products per group
   ([8] x [8, entries]) give every entry's error for any sigma, and the best entry is an argmin.
3. Sub-block scales: candidate sigmas max|x| / t for a spread of t, each with its best entries
   and then the least-squares sigma for them (sum(w a g) / sum(w g^2)); the best candidate is
   refined by two alternating steps (best entries at sigma, least-squares sigma at the entries).
4. Block scale: d from the largest sub-block scale, a few nearby d tried; each sub-block takes
   the 4-bit l nearest its least-squares sigma (optimal: the error is quadratic in sigma and the
   levels are evenly spaced), the d of least total error kept. The entries are then chosen
   again at the stored (rounded) sigmas.
5. De-shrinking: d is stored DESHRINK[fmt] times larger than fitted (entries and l unchanged).
   A least-squares fit shrinks: its error is orthogonal to the decoded block, so the decoded
   block's projection on the weights is 1 - (relative error), 0.93-0.95 for iq2_xxs on the demo's
   ffn_down, and every layer's output comes out that much too small. Undoing it costs ~5% more
   weighted error but lowers perplexity: on the demo (iq2_xxs, ffn_down, three realizations of
   the weights dithered by 3% of their RMS) 40.8 -> 39.4 with each tensor scaled by its own
   1 / projection, against 38.7 for llama.cpp's quantizer (which fits on the levels 1, 3, 5 but
   decodes 8, 25, 43 / 8, i.e. 3.125 and 5.375: ~1 / projection of our fit). Scaling each block
   or each row by its own 1 / projection instead does not help (41.0, 41.1), nor each block by
   min(1 / projection, DESHRINK) (40.5, which spares blocks fitted exactly); a constant per format
   (this encoder: 39.6), the tensors' typical shrinkage (ours against llama.cpp's projection:
   iq2_xxs 0.94 / 1.00, iq2_xs 0.955 / 1.005, iq2_s 0.97 / 1.005), keeps the blocks' relative
   scales and each block independent of its neighbours. Why uniform scaling matters and
   per-block unbiasing does not is not understood. The cost: a block the grid fits exactly (a
   constant one) decodes DESHRINK too large.

Weights w = qw * sqrt(s2 + x^2), s2 the block's mean x^2, qw the importance matrix's mean
squared activation of the value's column (as the K-quants take it); without an importance
matrix qw = 1. The error a matmul sees is sum_j (x_j - q_j)^2 E[a_j^2]: qw is that E[a_j^2];
the sqrt(s2 + x^2) factor favors the larger weights somewhat (on gaussian weights it costs ~2%
of unweighted RMS error, weights x^2 alone ~50%).
"""

from __future__ import annotations

import functools

import numpy as np

_F = np.float32

# candidate divisors t of a sub-block's max |x| for its first scale (43: the largest magnitude
# reproduces max |x|; larger t clip it in favor of the many smaller values; 8 and 16: flat
# sub-blocks, whose values all take the smallest magnitudes). Of fits equally good the larger
# sigma is kept: its 4-bit code is finer relative to it (l = 14 is 1/29 from its neighbors,
# l = 2 is 1/5), so it survives the rounding of the scales better.
_T_CANDIDATES = (8.0, 16.0, 22.0, 27.0, 32.0, 37.0, 43.0, 50.0)
_REFINE_STEPS = 2
_D_STEPS = (-2, -1, 0, 1, 2, 4)  # d = 8 max(sigma) / (31 + k)
# step 5: the stored d is the fitted one times this (see the module's docstring)
DESHRINK = {"iq2_xxs": 1.06, "iq2_xs": 1.05, "iq2_s": 1.035}

GROUPS_PER_SUB = {"iq2_xxs": 4, "iq2_xs": 2, "iq2_s": 2}


@functools.cache
def grid(fmt: str) -> np.ndarray:
    """The codebook of `fmt` as float32 [entries, 8] (from the core's tables)."""
    from .. import _core

    return np.ascontiguousarray(_core.iquant_grid(fmt), dtype=_F)


@functools.cache
def _grid_terms(fmt: str) -> tuple[np.ndarray, np.ndarray]:
    g = grid(fmt)
    return np.ascontiguousarray(g.T), np.ascontiguousarray((g * g).T)  # [8, entries] each


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in pieces of rows small enough (m n k <= 2^18) that OpenBLAS runs each on the calling
    thread: its own threads, started for every product of these thin shapes (k = 8) and fighting
    the encoder's threads, make one product ~100x slower."""
    out = np.empty((len(a), b.shape[1]), _F)
    step = max(1, (1 << 18) // (b.shape[0] * b.shape[1]))
    for s in range(0, len(a), step):
        np.matmul(a[s:s + step], b, out=out[s:s + step])
    return out


def weights(x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """The error weights of blocks x [B, 256] (qw: their importance [B, 256] or None)."""
    s2 = np.mean(x * x, axis=1, keepdims=True, dtype=_F)
    w = np.sqrt(s2 + x * x)
    return w if qw is None else qw * w


def search(fmt: str, x: np.ndarray, w: np.ndarray):
    """The encoding of blocks x [B, 256] under weights w: (d [B] f16, l [B, subs] 4-bit scales,
    idx [B*32] codebook entries, neg [B*32, 8] bool sign bits)."""
    gt, g2t = _grid_terms(fmt)
    per_sub = GROUPS_PER_SUB[fmt]
    B = len(x)
    xg = x.reshape(-1, 8)
    wg = np.ascontiguousarray(w, dtype=_F).reshape(-1, 8)
    neg = xg < 0
    a = np.abs(xg)
    if fmt != "iq2_s":  # even parity: the cheapest value to mis-sign takes the odd one
        odd = np.nonzero(np.count_nonzero(neg, axis=1) & 1)[0]
        j = (wg[odd] * a[odd] * a[odd]).argmin(axis=1)
        a[odd, j] = -a[odd, j]
        neg[odd, j] = ~neg[odd, j]
    A2 = _matmul(wg * a, gt)  # sum(w a g) per group and entry, doubled below
    A2 *= _F(2)
    Bq = _matmul(wg, g2t)  # sum(w g^2)
    rows = np.arange(len(xg))
    n_sub = len(xg) // per_sub
    tmp = np.empty_like(Bq)

    def best_entries(sigma_sub):
        """Each group's best entry at its sub-block's sigma, and per sub-block the sums
        sum(w a g), sum(w g^2) for those entries."""
        np.multiply(Bq, np.repeat(sigma_sub, per_sub)[:, None], out=tmp)
        np.subtract(tmp, A2, out=tmp)
        idx = tmp.argmin(axis=1)
        sa = (A2[rows, idx] * _F(0.5)).reshape(n_sub, per_sub).sum(axis=1)
        sb = Bq[rows, idx].reshape(n_sub, per_sub).sum(axis=1)
        return idx, sa, sb

    amax = np.abs(xg).reshape(n_sub, -1).max(axis=1)
    sigma = np.zeros(n_sub, _F)
    gain = np.zeros(n_sub, _F)  # sa^2 / sb: the error the least-squares sigma removes
    for t in _T_CANDIDATES:
        _, sa, sb = best_entries(amax / _F(t))
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where((sa > 0) & (sb > 0), sa * sa / sb, _F(0))
            better = g > gain * _F(1 + 1e-5)  # near ties: the first, larger sigma (see _T_CANDIDATES)
            sigma = np.where(better, sa / np.where(sb > 0, sb, _F(1)), sigma)
        gain = np.where(better, g, gain)
    for _ in range(_REFINE_STEPS):  # alternate: entries at sigma, sigma at the entries
        _, sa, sb = best_entries(sigma)
        ok = (sa > 0) & (sb > 0)
        sigma = np.where(ok, sa / np.where(ok, sb, _F(1)), sigma)
    _, sa, sb = best_entries(sigma)

    # block scale d and the 4-bit sub-block scales l (sigma = d (2l + 1) / 8)
    subs = n_sub // B
    sig_b, sa_b, sb_b = (v.reshape(B, subs) for v in (sigma, sa, sb))
    top = sig_b.max(axis=1)
    best_err = np.full(B, np.inf, _F)
    d16 = np.zeros(B, np.float16)
    L = np.zeros((B, subs), np.uint8)
    for k in _D_STEPS:
        d = (_F(8) * top / _F(31 + k)).astype(np.float16)
        df = d.astype(_F)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            l = np.clip(np.rint((_F(8) * sig_b / np.where(df > 0, df, _F(1)) - _F(1)) * _F(0.5)), 0, 15)
        s = df * (_F(2) * l + _F(1)) / _F(8)
        err = (s * s * sb_b - _F(2) * s * sa_b).sum(axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        d16 = np.where(better, d, d16)
        L = np.where(better[:, None], l.astype(np.uint8), L)
    sig_q = d16.astype(_F)[:, None] * (_F(2) * L + _F(1)) / _F(8)
    idx, _, _ = best_entries(sig_q.reshape(-1))
    d16 = np.minimum(d16.astype(_F) * _F(DESHRINK[fmt]), _F(65504)).astype(np.float16)
    return d16, L, idx, neg


def _sign_bits(neg: np.ndarray) -> np.ndarray:
    """[M, 8] bool -> [M] uint8, bit j for value j."""
    return np.packbits(neg, axis=1, bitorder="little")[:, 0]


def _nibbles(L: np.ndarray) -> np.ndarray:
    """16 4-bit scales [B, 16] -> 8 bytes: scale 2i low nibble, 2i + 1 high."""
    return (L[:, 0::2] | (L[:, 1::2] << 4)).astype(np.uint8)


def encode(fmt: str, x: np.ndarray, out: np.ndarray, qw: np.ndarray | None = None) -> None:
    """Blocks x [B, 256] (f32) into out[B] (the format's structured blocks)."""
    B = len(x)
    d16, L, idx, neg = search(fmt, x, weights(x, qw))
    out["d"] = d16
    signs = _sign_bits(neg)
    if fmt == "iq2_xxs":
        g = idx.astype(np.uint32).reshape(B, 8, 4)  # [block, sub-block, group]
        s7 = (signs & 0x7F).astype(np.uint32).reshape(B, 8, 4)
        words = np.empty((B, 8, 2), np.uint32)
        words[..., 0] = g[..., 0] | (g[..., 1] << 8) | (g[..., 2] << 16) | (g[..., 3] << 24)
        words[..., 1] = (s7[..., 0] | (s7[..., 1] << 7) | (s7[..., 2] << 14) | (s7[..., 3] << 21)
                         | (L.astype(np.uint32) << 28))
        out["qs"] = words.reshape(B, 16).astype("<u4").view("<u2")
    elif fmt == "iq2_xs":
        out["qs"] = (idx | ((signs & 0x7F).astype(np.int64) << 9)).reshape(B, 32).astype("<u2")
        out["scales"] = _nibbles(L)
    else:  # iq2_s: 8 low bits in qs, 2 high in qh (group 4i + k at bits 2k of qh[i]), 8 signs
        out["qs"] = (idx & 0xFF).reshape(B, 32).astype(np.uint8)
        hi = (idx >> 8).reshape(B, 8, 4).astype(np.uint8)
        out["qh"] = hi[..., 0] | (hi[..., 1] << 2) | (hi[..., 2] << 4) | (hi[..., 3] << 6)
        out["signs"] = signs.reshape(B, 32)
        out["scales"] = _nibbles(L)
