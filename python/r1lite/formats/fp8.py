"""FP8 E4M3FN weights with 128x128 block scales, as DeepSeek-V3/R1 checkpoints store them
(ARCH.md §3): W[r][c] = e4m3(W8[r][c]) · S[r // bs0][c // bs1], S being `<name>_scale_inv`."""

from __future__ import annotations

import numpy as np

from ..errors import ModelFormatError


def _e4m3_table() -> np.ndarray:
    """The f32 value of each of the 256 E4M3FN bytes: sign, 4 exponent bits (bias 7), 3 mantissa
    bits; exponent 0 is subnormal; 0x7F and 0xFF are NaN; no infinities."""
    b = np.arange(256)
    sign = np.where(b & 0x80, -1.0, 1.0)
    exp, man = (b >> 3) & 0xF, b & 0x7
    value = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1 + man / 8.0) * 2.0 ** (exp - 7.0))
    value = sign * value
    value[(b & 0x7F) == 0x7F] = np.nan
    return value.astype(np.float32)


E4M3_TO_F32 = _e4m3_table()
DEFAULT_BLOCK = (128, 128)


def block_size(config: dict, where: str) -> tuple[int, int]:
    """weight_block_size from a config's quantization_config (DeepSeek: [128, 128])."""
    q = config.get("quantization_config") or {}
    size = q.get("weight_block_size", DEFAULT_BLOCK)
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ModelFormatError(f"{where}: bad quantization_config.weight_block_size {size!r}")
    return int(size[0]), int(size[1])


def dequantize(w8: np.ndarray, scale_inv: np.ndarray, block: tuple[int, int], name: str) -> np.ndarray:
    """f32 [rows, cols] from fp8 bytes [rows, cols] and f32 block scales [ceil(rows/b0), ceil(cols/b1)];
    the last block of a row or column may be partial."""
    if w8.ndim != 2:
        raise ModelFormatError(f"tensor '{name}': fp8 weights must be 2-D, got shape {list(w8.shape)}")
    rows, cols = w8.shape
    want = (-(-rows // block[0]), -(-cols // block[1]))
    if tuple(scale_inv.shape) != want:
        raise ModelFormatError(
            f"tensor '{name}_scale_inv' has shape {list(scale_inv.shape)}, expected {list(want)} "
            f"for fp8 weights {[rows, cols]} in blocks of {list(block)}")
    out = E4M3_TO_F32[w8]
    scales = np.asarray(scale_inv, dtype=np.float32)
    expanded = np.repeat(np.repeat(scales, block[0], axis=0)[:rows], block[1], axis=1)[:, :cols]
    out *= expanded
    if not np.isfinite(out).all():
        raise ModelFormatError(f"tensor '{name}': fp8 weights hold NaN or non-finite scales")
    return out


def quantize(w: np.ndarray, block: tuple[int, int] = DEFAULT_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(fp8 bytes, f32 scale_inv) of f32 weights, as DeepSeek's checkpoints were made: per block,
    scale = amax / 448, bytes = nearest E4M3 of w / scale. For building test checkpoints."""
    rows, cols = w.shape
    br, bc = -(-rows // block[0]), -(-cols // block[1])
    padded = np.zeros((br * block[0], bc * block[1]), np.float32)
    padded[:rows, :cols] = w
    blocks = padded.reshape(br, block[0], bc, block[1])
    amax = np.abs(blocks).max(axis=(1, 3))
    scale = np.where(amax > 0, amax / 448.0, 1.0).astype(np.float32)
    scaled = (blocks / scale[:, None, :, None]).reshape(padded.shape)[:rows, :cols]
    finite = np.flatnonzero(np.isfinite(E4M3_TO_F32))
    order = finite[np.argsort(E4M3_TO_F32[finite], kind="stable")]
    values = E4M3_TO_F32[order]
    pos = np.clip(np.searchsorted(values, scaled), 1, len(values) - 1)
    nearer_low = (scaled - values[pos - 1]) <= (values[pos] - scaled)
    w8 = order[np.where(nearer_low, pos - 1, pos)].astype(np.uint8)
    return w8, scale
