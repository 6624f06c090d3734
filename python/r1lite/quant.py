"""Weight formats on the Python side: block quantization to q8_0 / q4_0 (the planar layout of
csrc/core/dtype.h, the same rounding as ggml) and float conversions. The formats themselves are
the core's table (_core.weight_formats(), csrc/core/formats.h)."""

from __future__ import annotations

import numpy as np

from . import _core

BLOCK = 32
TABLE = {f["name"]: f for f in _core.weight_formats()}
FLOAT_FORMATS = tuple(n for n, f in TABLE.items() if f["layout"] == "float")
QUANT_FORMATS = tuple(n for n, f in TABLE.items() if f["layout"] == "planar")  # r1lite's planar q8_0 / q4_0
BLOCK_FORMATS = tuple(n for n, f in TABLE.items() if f["layout"] == "blocks")  # GGUF's blocks
FORMATS = tuple(TABLE)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """C's roundf: halves round away from zero (numpy's round goes to even)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _blocks(w: np.ndarray) -> np.ndarray:
    """w [rows, cols] as f32 blocks [rows, ceil(cols/32), 32], the last one zero-padded."""
    rows, cols = w.shape
    nb = -(-cols // BLOCK)
    out = np.zeros((rows, nb * BLOCK), np.float32)
    out[:, :cols] = w
    return out.reshape(rows, nb, BLOCK)


def quantize_q8_0(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 quants [rows, blocks*32], f16 scales [rows, blocks]); scale = max|x| / 127."""
    b = _blocks(w)
    d = np.abs(b).max(axis=2) / 127.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    q = _round_half_away(b * inv[..., None]).astype(np.int8)
    return q.reshape(w.shape[0], -1), d.astype(np.float16)


def quantize_q4_0(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 packed quants [rows, blocks*16], f16 scales [rows, blocks]). As ggml: the scale is
    the value of largest magnitude / -8, quants are min(15, trunc(x/scale + 8.5))."""
    b = _blocks(w)
    idx = np.abs(b).argmax(axis=2)
    peak = np.take_along_axis(b, idx[..., None], axis=2)[..., 0]
    d = peak / -8.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, np.trunc(b * inv[..., None] + 8.5)).astype(np.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)  # byte j: element j low, element j+16 high
    return packed.reshape(w.shape[0], -1), d.astype(np.float16)


def dequantize(fmt: str, q: np.ndarray, scales: np.ndarray, cols: int) -> np.ndarray:
    """f32 [rows, cols] of a quantized tensor."""
    rows, nb = scales.shape
    if fmt == "q8_0":
        vals = q.reshape(rows, nb, BLOCK).astype(np.float32)
    elif fmt == "q4_0":
        packed = q.reshape(rows, nb, BLOCK // 2)
        vals = np.concatenate([packed & 0x0F, packed >> 4], axis=2).astype(np.float32) - 8.0
    else:
        raise ValueError(f"not a quantized format: {fmt!r}")
    return (vals * scales.astype(np.float32)[..., None]).reshape(rows, nb * BLOCK)[:, :cols]


def to_bf16_bits(w: np.ndarray) -> np.ndarray:
    """f32 -> bf16 bit patterns (uint16), rounding to nearest even."""
    bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def encode(w: np.ndarray, fmt: str, importance: np.ndarray | None = None) -> tuple:
    """(array, fmt) or (quants, fmt, scales): an f32 matrix in a storage format (block formats:
    its blocks as bytes [rows, row bytes]). importance: an importance matrix's weights for the
    K-quants (block_quantizers.quantize_blocks); other formats ignore it."""
    w = np.asarray(w, dtype=np.float32)
    if fmt == "f32":
        return (np.ascontiguousarray(w), fmt)
    if fmt == "f16":
        return (w.astype(np.float16), fmt)
    if fmt == "bf16":
        return (to_bf16_bits(w), fmt)
    if fmt == "q8_0":
        q, d = quantize_q8_0(w)
        return (q, fmt, d)
    if fmt == "q4_0":
        q, d = quantize_q4_0(w)
        return (q, fmt, d)
    if fmt in BLOCK_FORMATS:
        from .formats.block_quantizers import quantize_blocks
        return (quantize_blocks(fmt, w, importance=importance), fmt)
    raise ValueError(f"unknown weight format {fmt!r} (choose from {', '.join(FORMATS)})")
