"""A GGUF file (llama.cpp's format) read with the `gguf` package: its layout checked first, then
its metadata and tensors (each dequantized to f32 on request)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelFormatError, UnsupportedModelError

# GGML types r1lite dequantizes (gguf.GGMLQuantizationType names)
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                   "Q4_K", "Q5_K", "Q6_K")


def _require_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("reading GGUF files needs the gguf package: pip install gguf") from None
    return gguf



# GGUF metadata value types (llama.cpp's gguf.h) -> bytes of one value; 8: string, 9: array
SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9


def check_layout(path: str) -> None:
    """Walk a GGUF file's header (metadata and tensor infos) checking every count and length
    against the bytes left, before the gguf package reads it: its reader trusts them, and a
    corrupt count makes it loop or allocate without end. ModelFormatError names the problem."""
    import mmap
    import os
    import struct

    size = os.path.getsize(path)
    if size < 24:
        raise ModelFormatError(f"{path}: {size} bytes is too short for a GGUF file")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        pos = 0

        def take(fmt: str, what: str):
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                raise ModelFormatError(f"{path}: truncated in {what} (offset {pos})")
            value = struct.unpack_from(fmt, m, pos)
            pos += n
            return value[0] if len(value) == 1 else value

        def skip_string(what: str):
            nonlocal pos
            length = take("<Q", what)
            if length > size - pos:
                raise ModelFormatError(f"{path}: {what} claims {length} bytes, {size - pos} are left")
            pos += length

        magic, version = take("<4sI", "the header")
        if magic != b"GGUF" or version not in (2, 3):
            raise ModelFormatError(f"{path}: not a GGUF file of version 2 or 3")
        n_tensors, n_kv = take("<QQ", "the header")
        if n_kv > (size - pos) // 12 or n_tensors > (size - pos) // 24:
            raise ModelFormatError(f"{path}: {n_kv} metadata entries / {n_tensors} tensors cannot fit")
        for i in range(n_kv):
            skip_string(f"metadata key {i}")
            vtype = take("<I", f"metadata entry {i}")
            count, etype = 1, vtype
            if vtype == ARRAY:
                etype, count = take("<IQ", f"metadata array {i}")
            if etype == STRING:
                if count > (size - pos) // 8:
                    raise ModelFormatError(f"{path}: metadata entry {i}: {count} strings cannot fit")
                for _ in range(count):
                    skip_string(f"a string of metadata entry {i}")
            elif etype in SCALAR_BYTES:
                if count * SCALAR_BYTES[etype] > size - pos:
                    raise ModelFormatError(f"{path}: metadata entry {i}: {count} values cannot fit")
                pos += count * SCALAR_BYTES[etype]
            else:
                raise ModelFormatError(f"{path}: metadata entry {i} has unknown type {etype}")
        for i in range(n_tensors):
            skip_string(f"tensor info {i}")
            n_dims = take("<I", f"tensor info {i}")
            if not 1 <= n_dims <= 4:
                raise ModelFormatError(f"{path}: tensor info {i} has {n_dims} dimensions")
            dims = take(f"<{n_dims}Q", f"tensor info {i}")
            dims = (dims,) if n_dims == 1 else dims
            count = 1
            for d in dims:
                count *= d
            if count > 8 * size:  # no GGML type packs more than 8 values into a byte
                raise ModelFormatError(f"{path}: tensor info {i} has shape {list(dims)}, larger than the file")
            take("<IQ", f"tensor info {i}")


class GGUFFile:
    def __init__(self, path):
        gguf = _require_gguf()
        self.path = str(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        check_layout(self.path)
        try:
            self.reader = gguf.GGUFReader(self.path)
        except FileNotFoundError:
            raise
        except Exception as e:  # the reader raises ValueError/IndexError/... on bad bytes
            raise ModelFormatError(f"{self.path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, key, default=None):
        field = self.reader.fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception as e:
            raise ModelFormatError(f"{self.path}: metadata '{key}' is unreadable ({e})") from None

    def need(self, key):
        value = self.get(key)
        if value is None:
            raise ModelFormatError(f"{self.path}: metadata lacks '{key}'")
        return value

    def f32(self, name: str) -> np.ndarray:
        """A tensor as f32 in PyTorch's [out, in] order."""
        gguf = _require_gguf()
        t = self.tensors[name]
        kind = t.tensor_type.name
        if kind not in SUPPORTED_TYPES:
            raise UnsupportedModelError(
                f"{self.path}: tensor '{name}' has GGML type {kind}, which r1lite does not read "
                f"(supported: {', '.join(SUPPORTED_TYPES)})")
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost first
        try:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as e:
            raise ModelFormatError(f"{self.path}: tensor '{name}' does not decode ({e})") from None
        return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)
