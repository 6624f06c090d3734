"""A GGUF file (llama.cpp's format) read with the `gguf` package: its layout checked first, then
its metadata and tensors, which stay views of the mapped file in their own formats (the GGML
types of the core's format table: _core.weight_formats()). A split file
(name-00001-of-00003.gguf, as llama.cpp's gguf-split writes it) is read as one: its parts'
tensors together, the metadata of the first."""

from __future__ import annotations

import os
import re

import numpy as np

from .. import _core
from ..errors import ModelFormatError, UnsupportedModelError

# GGML type name -> (r1lite format, values per block, bytes per block), from the core's table
GGML_FORMATS = {f["gguf_name"]: (f["name"], f["block"], f["block_bytes"])
                for f in _core.weight_formats() if f["gguf_name"]}
SUPPORTED_TYPES = tuple(GGML_FORMATS)
SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


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
        self.path = str(path)
        first = _open_part(self.path)
        self.reader = first
        self.parts = [first]
        count = int(self.get("split.count", 1) or 1)
        if count > 1:
            self.parts = [first] + [_open_part(p) for p in _other_parts(self.path, count, self.get("split.no", 0))]
        self.tensors, self._part_of = {}, {}
        for part in self.parts:
            for t in part.tensors:
                if t.name in self.tensors:
                    raise ModelFormatError(f"{self.path}: tensor '{t.name}' appears in two parts")
                self.tensors[t.name] = t
                self._part_of[t.name] = part.path
        self.file_bytes = sum(os.path.getsize(part.path) for part in self.parts)

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

    def format_of(self, name: str) -> str:
        """The r1lite format of a tensor (UnsupportedModelError for a GGML type outside the table)."""
        kind = self.tensors[name].tensor_type.name
        if kind not in GGML_FORMATS:
            raise UnsupportedModelError(
                f"{self.path}: tensor '{name}' has GGML type {kind}, which r1lite does not read "
                f"(supported: {', '.join(SUPPORTED_TYPES)})")
        return GGML_FORMATS[kind][0]

    def raw(self, name: str, copy: bool = False) -> tuple[np.ndarray, str]:
        """(array, format) of a tensor in its own format, PyTorch's [.., out, in] order: f32 / f16
        values, bf16 bits as uint16, block formats as bytes [.., rows, row bytes]. A view of the
        mapped file, or with copy=True the bytes read into memory of their own (a tensor about to be
        re-laid-out: reading it through the map would keep its pages resident as well)."""
        fmt = self.format_of(name)
        t = self.tensors[name]
        view = t.data
        if fmt == "bf16":
            view = view.view(np.uint16).reshape(*view.shape[:-1], -1)
        if copy:
            path = self._part_of[name]
            try:
                data = np.fromfile(path, dtype=view.dtype, count=view.size, offset=int(t.data_offset))
            except (OSError, ValueError) as e:
                raise ModelFormatError(f"{path}: tensor '{name}' is unreadable ({e})") from None
            if data.size != view.size:
                raise ModelFormatError(f"{path}: tensor '{name}' is truncated")
            view = data.reshape(view.shape)
        return view, fmt

    def f32(self, name: str) -> np.ndarray:
        """A tensor as f32 in PyTorch's [out, in] order."""
        arr, fmt = self.raw(name)
        shape = tuple(int(d) for d in reversed(self.tensors[name].shape))  # GGUF lists dims innermost first
        if fmt in ("f32", "f16", "bf16"):
            from .tensors import as_f32
            return np.ascontiguousarray(as_f32(arr, fmt)).reshape(shape)
        try:
            values = _core.dequantize_blocks(fmt, np.ascontiguousarray(arr).reshape(-1))
        except ValueError as e:
            raise ModelFormatError(f"{self.path}: tensor '{name}' does not decode ({e})") from None
        return values.reshape(shape)


def _open_part(path: str):
    """A gguf.GGUFReader of one file, its layout checked first."""
    gguf = _require_gguf()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    check_layout(path)
    try:
        reader = gguf.GGUFReader(path)
    except FileNotFoundError:
        raise
    except Exception as e:  # the reader raises ValueError/IndexError/... on bad bytes
        raise ModelFormatError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
    reader.path = path
    return reader


def _other_parts(path: str, count: int, number) -> list[str]:
    """The paths of a split file's other parts (llama.cpp's naming: stem-0000N-of-0000M.gguf)."""
    m = SPLIT_NAME.match(os.path.basename(path))
    if not m or int(m["count"]) != count:
        raise ModelFormatError(f"{path}: metadata says it is one of {count} parts, but its name is not "
                               f"<name>-0000N-of-{count:05d}.gguf")
    if int(m["no"]) != 1 or int(number or 0) != 0:
        first = f"{m['stem']}-00001-of-{count:05d}.gguf"
        raise ModelFormatError(f"{path}: part {m['no']} of a split file; load the first part, {first}")
    folder = os.path.dirname(path)
    parts = [os.path.join(folder, f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(2, count + 1)]
    missing = [p for p in parts if not os.path.exists(p)]
    if missing:
        raise ModelFormatError(f"{path}: split file part {missing[0]} is missing "
                               f"({len(missing)} of {count} parts missing)")
    return parts
