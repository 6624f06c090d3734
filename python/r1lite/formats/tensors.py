"""The tensors the core expects for a config (r1lite name -> (shape, kind)), and lazily read
tensors."""

from __future__ import annotations

from .. import _core


# The core's block formats (GGUF's blocks, scales inside: held as bytes [rows, row bytes])
BLOCK_FORMATS = frozenset(f["name"] for f in _core.weight_formats() if f["layout"] == "blocks")


def expected_tensors(cfg: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """r1lite name -> (shape, kind) of every tensor the config calls for, as the core lists them
    (csrc/model/weights.h). kind: "matrix" (stored as the checkpoint or the conversion chooses)
    or "f32" (norm weights, biases and the MoE router: always f32, never quantized)."""
    return {name: (tuple(shape), kind) for name, shape, kind in _core.tensor_specs(cfg)}


class LazyTensor:
    """A tensor read (dequantized, re-laid-out) only when asked for: a conversion takes one at a
    time, so its memory stays bounded by the largest tensor rather than the checkpoint."""

    def __init__(self, read):
        self._read = read

    def get(self) -> tuple:
        return self._read()


def materialize(entry) -> tuple:
    """(array, format[, scales]) of a tensor entry, reading it now if it is lazy."""
    return entry.get() if isinstance(entry, LazyTensor) else entry


def as_f32(arr, fmt: str):
    """A float32 copy (or the array itself when already f32) of a tensor stored as `fmt`."""
    import numpy as np

    if fmt == "f32":
        return np.ascontiguousarray(arr, dtype=np.float32)
    if fmt == "bf16":
        return (np.asarray(arr, dtype=np.uint32) << 16).view(np.float32)
    if fmt == "f16":
        return np.asarray(arr, dtype=np.float32)
    if fmt in BLOCK_FORMATS:  # bytes [.., rows, row bytes]
        values = _core.dequantize_blocks(fmt, np.ascontiguousarray(arr).reshape(-1))
        return values.reshape(*arr.shape[:-1], -1)
    raise ValueError(f"cannot convert format {fmt!r} to f32")
