"""A bounds-checked safetensors reader that maps the file and hands out zero-copy numpy views.

Our own parser (rather than the safetensors package) because numpy has no bfloat16 or float8:
those tensors come back as their raw integer bit patterns with a format name beside them.
Layout: u64 little-endian header length N, N bytes of JSON, then the data; offsets in the JSON
are relative to the first byte after the header (ARCH.md §2).
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from ..errors import ModelFormatError

# safetensors dtype -> (numpy dtype holding the bits, r1lite format name or None)
DTYPES = {
    "F32": (np.float32, "f32"),
    "BF16": (np.uint16, "bf16"),
    "F16": (np.float16, "f16"),
    "F64": (np.float64, None),
    "F8_E4M3": (np.uint8, "fp8_e4m3"),
    "I8": (np.int8, None),
    "U8": (np.uint8, None),
    "I16": (np.int16, None),
    "U16": (np.uint16, None),
    "I32": (np.int32, None),
    "U32": (np.uint32, None),
    "I64": (np.int64, None),
    "U64": (np.uint64, None),
    "BOOL": (np.bool_, None),
}

MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsFile:
    """One .safetensors file: its header, checked, and its data mapped read-only."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise FileNotFoundError(f"{self.path}: cannot open ({e.strerror})") from None
        if size < 8:
            raise ModelFormatError(f"{self.path}: {size} bytes is too short for a safetensors file")
        with open(self.path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                raise ModelFormatError(
                    f"{self.path}: header length {header_len} does not fit in the file "
                    f"({size} bytes): not a safetensors file, or truncated")
            raw = f.read(header_len)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFormatError(f"{self.path}: header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise ModelFormatError(f"{self.path}: header is not a JSON object")
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ModelFormatError(f"{self.path}: __metadata__ must map strings to strings")
        self.metadata: dict[str, str] = meta
        self.data_start = 8 + header_len
        data_len = size - self.data_start
        self._entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, e in header.items():
            self._entries[name] = self._check_entry(name, e, data_len)
        self._map = (np.memmap(self.path, dtype=np.uint8, mode="r")
                     if size > self.data_start and self._entries else None)

    def _check_entry(self, name, e, data_len):
        where = f"{self.path}: tensor '{name}'"
        if not isinstance(e, dict):
            raise ModelFormatError(f"{where}: header entry is not an object")
        dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
        if dtype not in DTYPES:
            raise ModelFormatError(f"{where}: unknown dtype {dtype!r}")
        if (not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ModelFormatError(f"{where}: bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ModelFormatError(f"{where}: bad data_offsets {offsets!r}")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        nbytes = count * np.dtype(DTYPES[dtype][0]).itemsize
        if not 0 <= begin <= end or end - begin != nbytes:
            raise ModelFormatError(
                f"{where}: data_offsets {offsets} do not hold {dtype} {shape} ({nbytes} bytes)")
        if end > data_len:
            raise ModelFormatError(
                f"{where}: data ends at byte {end} but the file holds {data_len} data bytes "
                "(truncated file?)")
        return dtype, tuple(shape), begin, end

    def keys(self):
        return self._entries.keys()

    def __contains__(self, name):
        return name in self._entries

    def dtype(self, name: str) -> str:
        return self._entries[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def array(self, name: str) -> np.ndarray:
        """The tensor as a read-only numpy view of the mapped file (raw bits for bf16/fp8)."""
        dtype, shape, begin, end = self._entries[name]
        np_dtype = DTYPES[dtype][0]
        if begin == end:
            return np.zeros(shape, dtype=np_dtype)
        start = self.data_start + begin
        return self._map[start:self.data_start + end].view(np_dtype).reshape(shape)


    def read(self, name: str) -> np.ndarray:
        """The tensor as a fresh array read from the file (not the mapping): its memory is
        released with the array, which keeps conversions of huge checkpoints bounded."""
        dtype, shape, begin, end = self._entries[name]
        np_dtype = DTYPES[dtype][0]
        out = np.empty(shape, dtype=np_dtype)
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            got = f.readinto(out.reshape(-1).view(np.uint8))
        if got != end - begin:
            raise ModelFormatError(f"{self.path}: tensor '{name}' is cut short (file changed?)")
        return out


def format_of(st_dtype: str) -> str | None:
    """r1lite's format name for a safetensors dtype (None when r1lite cannot compute with it)."""
    return DTYPES[st_dtype][1]
