"""Layout changes for DeepSeek's MLA weights (ARCH.md §4), applied once at import so that the core
has one rope kernel and the absorbed attention reads plain row-major matrices.

They move rows (and transpose kv_b's key half) without touching values, so they work on any
storage dtype (bf16 bits, f32)."""

from __future__ import annotations

import numpy as np


def rope_half_order(dr: int) -> np.ndarray:
    """Channel order that turns interleaved rope pairs (2i, 2i+1) into rotate-half pairs (i, i + dr/2):
    [0, 2, 4, ..., dr-2, 1, 3, ..., dr-1]."""
    return np.concatenate([np.arange(0, dr, 2), np.arange(1, dr, 2)])


def reorder_rope_rows(w: np.ndarray, heads: int, head_rows: int, dr: int) -> np.ndarray:
    """Rows of w viewed as `heads` groups of head_rows, whose last dr rows are rope channels in
    interleaved order: the same rows with those channels in rotate-half order."""
    order = np.arange(head_rows)
    order[head_rows - dr:] = head_rows - dr + rope_half_order(dr)
    rows = (np.arange(heads)[:, None] * head_rows + order[None, :]).reshape(-1)
    return np.ascontiguousarray(w[rows])


def split_kv_b(w: np.ndarray, heads: int, dn: int, dv: int, which: str) -> np.ndarray:
    """kv_b [H·(dn + dv), C] cut per head into the absorbed attention's two matrices:
    "uk_t": W_UK[h]ᵀ stacked as [H·C, dn]; "uv": W_UV[h] stacked as [H·dv, C]."""
    c = w.shape[1]
    per_head = w.reshape(heads, dn + dv, c)
    if which == "uk_t":
        return np.ascontiguousarray(per_head[:, :dn, :].transpose(0, 2, 1).reshape(heads * c, dn))
    return np.ascontiguousarray(per_head[:, dn:, :].reshape(heads * dv, c))
