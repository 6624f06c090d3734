"""A GGUF file (llama.cpp's format), parsed here: its header walked with every count and length
checked against the bytes left (a corrupt file gives a ModelFormatError naming the problem, never
an endless loop or a huge allocation), its metadata as Python values, its tensors as views of the
mapped file in their own formats (the GGML types of the core's format table:
_core.weight_formats()). A split file (name-00001-of-00003.gguf, as llama.cpp's gguf-split
writes it) is read as one: its parts' tensors together, the metadata of the first.

Not the `gguf` package's reader: it builds numpy objects for every metadata string (~0.5 GB and
seconds for a 150K-token vocabulary), which would be most of the memory and time of a load."""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

from .. import _core
from ..errors import ModelFormatError, UnsupportedModelError

# GGML type id -> name (ggml.h's enum ggml_type), for the file's types and for naming the ones
# outside the table
GGML_TYPE_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                   10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
                   17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
                   23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
                   30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}
# GGML type name -> (r1lite format, values per block, bytes per block), from the core's table
GGML_FORMATS = {f["gguf_name"]: (f["name"], f["block"], f["block_bytes"])
                for f in _core.weight_formats() if f["gguf_name"]}
SUPPORTED_TYPES = tuple(GGML_FORMATS)
SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

# GGUF metadata value types (gguf.h): struct format of the scalars; 8: string, 9: array
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
NUMPY_SCALARS = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "u1",
                 10: "<u8", 11: "<i8", 12: "<f8"}
STRING, ARRAY = 8, 9
DEFAULT_ALIGNMENT = 32


@dataclass
class TensorInfo:
    name: str
    shape: tuple        # GGUF's order: innermost (row length) first
    type_name: str      # GGML's name of its type
    offset: int         # absolute, in its part
    nbytes: int
    path: str           # the part that holds it


class _Header:
    """A cursor over a mapped GGUF header; every read is bounds-checked."""

    def __init__(self, path: str, buf):
        self.path, self.buf, self.pos, self.size = path, buf, 0, len(buf)

    def take(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise ModelFormatError(f"{self.path}: truncated in {what} (offset {self.pos})")
        value = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value[0] if len(value) == 1 else value

    def string(self, what: str) -> str:
        length = self.take("<Q", what)
        if length > self.size - self.pos:
            raise ModelFormatError(f"{self.path}: {what} claims {length} bytes, {self.size - self.pos} are left")
        raw = bytes(self.buf[self.pos:self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"{self.path}: {what} is not UTF-8") from None

    def strings(self, count: int, what: str) -> list:
        """`count` strings in a row (a vocabulary: 150K of them), read in one tight loop."""
        buf, pos, size, out = self.buf, self.pos, self.size, []
        length_at = struct.Struct("<Q").unpack_from
        append = out.append
        try:
            for _ in range(count):
                (n,) = length_at(buf, pos)
                pos += 8
                if n > size - pos:
                    raise ModelFormatError(f"{self.path}: a string of {what} claims {n} bytes, "
                                           f"{size - pos} are left")
                append(str(buf[pos:pos + n], "utf-8"))
                pos += n
        except struct.error:
            raise ModelFormatError(f"{self.path}: truncated in {what} (offset {pos})") from None
        except UnicodeDecodeError:
            raise ModelFormatError(f"{self.path}: a string of {what} is not UTF-8") from None
        self.pos = pos
        return out

    def value(self, vtype: int, what: str):
        if vtype == STRING:
            return self.string(what)
        if vtype in SCALARS:
            return self.take("<" + SCALARS[vtype], what)
        if vtype != ARRAY:
            raise ModelFormatError(f"{self.path}: {what} has unknown type {vtype}")
        etype, count = self.take("<IQ", what)
        if etype == STRING:
            if count > (self.size - self.pos) // 8:
                raise ModelFormatError(f"{self.path}: {what}: {count} strings cannot fit")
            return self.strings(count, what)
        if etype not in NUMPY_SCALARS:
            raise ModelFormatError(f"{self.path}: {what} is an array of unknown type {etype}")
        dtype = np.dtype(NUMPY_SCALARS[etype])
        if count > (self.size - self.pos) // dtype.itemsize:
            raise ModelFormatError(f"{self.path}: {what}: {count} values cannot fit")
        arr = np.frombuffer(self.buf, dtype, count, self.pos)
        self.pos += count * dtype.itemsize
        return (arr.astype(bool) if etype == 7 else arr).tolist()


class _Part:
    """One GGUF file: metadata {key: value}, their types {key: (type, array element type)}, and
    tensor infos, from a walk of its header."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        self.path = path
        size = os.path.getsize(path)
        if size < 24:
            raise ModelFormatError(f"{path}: {size} bytes is too short for a GGUF file")
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        h = _Header(path, self.map)
        magic, version = h.take("<4sI", "the header")
        if magic != b"GGUF" or version not in (2, 3):
            raise ModelFormatError(f"{path}: not a GGUF file of version 2 or 3")
        n_tensors, n_kv = h.take("<QQ", "the header")
        if n_kv > (size - h.pos) // 12 or n_tensors > (size - h.pos) // 24:
            raise ModelFormatError(f"{path}: {n_kv} metadata entries / {n_tensors} tensors cannot fit")
        self.metadata, self.types = {}, {}
        for i in range(n_kv):
            key = h.string(f"metadata key {i}")
            vtype = h.take("<I", f"metadata entry {i}")
            element = struct.unpack_from("<I", self.map, h.pos)[0] if vtype == ARRAY and h.pos + 4 <= size else None
            self.metadata[key] = h.value(vtype, f"metadata '{key}'")
            self.types[key] = (vtype, element)
        infos = []
        for i in range(n_tensors):
            name = h.string(f"tensor info {i}")
            n_dims = h.take("<I", f"tensor '{name}'")
            if not 1 <= n_dims <= 4:
                raise ModelFormatError(f"{path}: tensor '{name}' has {n_dims} dimensions")
            dims = h.take(f"<{n_dims}Q", f"tensor '{name}'")
            dims = (dims,) if n_dims == 1 else tuple(dims)
            ggml_type, offset = h.take("<IQ", f"tensor '{name}'")
            infos.append((name, dims, ggml_type, offset))
        alignment = self.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise ModelFormatError(f"{path}: general.alignment {alignment!r} is not a power of two")
        data_start = -(-h.pos // alignment) * alignment
        self.tensors = {}
        for name, dims, ggml_type, offset in infos:
            if name in self.tensors:
                raise ModelFormatError(f"{path}: tensor '{name}' appears twice")
            type_name = GGML_TYPE_NAMES.get(ggml_type, f"type {ggml_type}")
            count = int(np.prod(dims, dtype=object))
            nbytes = 0
            if type_name in GGML_FORMATS:
                _, block, block_bytes = GGML_FORMATS[type_name]
                if dims[0] % block:
                    raise ModelFormatError(f"{path}: tensor '{name}' ({type_name}) has rows of {dims[0]} "
                                           f"values, not whole blocks of {block}")
                nbytes = count // block * block_bytes
                if data_start + offset + nbytes > size:
                    raise ModelFormatError(f"{path}: tensor '{name}' ends at byte {data_start + offset + nbytes}, "
                                           f"past the end of the file ({size} bytes): truncated?")
            self.tensors[name] = TensorInfo(name, dims, type_name, data_start + offset, nbytes, path)

    def get(self, key, default=None):
        return self.metadata.get(key, default)


class GGUFFile:
    def __init__(self, path):
        self.path = str(path)
        first = _Part(self.path)
        self.parts = [first]
        self.metadata, self.metadata_types = first.metadata, first.types
        count = self.get("split.count", 1)
        if not isinstance(count, int) or count < 1:
            raise ModelFormatError(f"{self.path}: split.count {count!r} is not a positive integer")
        if count > 1:
            self.parts += [_Part(p) for p in _other_parts(self.path, count, self.get("split.no", 0))]
        self.tensors: dict[str, TensorInfo] = {}
        for part in self.parts:
            for name, t in part.tensors.items():
                if name in self.tensors:
                    raise ModelFormatError(f"{self.path}: tensor '{name}' appears in two parts")
                self.tensors[name] = t
        self._maps = {part.path: part.map for part in self.parts}
        self.file_bytes = sum(os.path.getsize(part.path) for part in self.parts)

    def get(self, key, default=None):
        value = self.metadata.get(key)
        return default if value is None else value

    def need(self, key):
        value = self.get(key)
        if value is None:
            raise ModelFormatError(f"{self.path}: metadata lacks '{key}'")
        return value

    def format_of(self, name: str) -> str:
        """The r1lite format of a tensor (UnsupportedModelError for a GGML type outside the table)."""
        kind = self.tensors[name].type_name
        if kind not in GGML_FORMATS:
            raise UnsupportedModelError(
                f"{self.tensors[name].path}: tensor '{name}' has GGML type {kind}, which r1lite does "
                f"not read (supported: {', '.join(SUPPORTED_TYPES)})")
        return GGML_FORMATS[kind][0]

    def raw(self, name: str, copy: bool = False) -> tuple[np.ndarray, str]:
        """(array, format) of a tensor in its own format, PyTorch's [.., out, in] order: f32 / f16
        values, bf16 bits as uint16, block formats as bytes [.., rows, row bytes]. A read-only view
        of the mapped file, or with copy=True the bytes read into memory of their own (a tensor
        about to be re-laid-out: reading it through the map would keep its pages resident too)."""
        fmt = self.format_of(name)
        t = self.tensors[name]
        _, block, block_bytes = GGML_FORMATS[t.type_name]
        dims = list(reversed(t.shape))
        if fmt in ("f32", "f16", "bf16"):
            dtype = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}[fmt]
        else:
            dtype = np.uint8
            dims[-1] = dims[-1] // block * block_bytes
        count = int(np.prod(dims))
        if copy:
            with open(t.path, "rb") as f:
                f.seek(t.offset)
                data = np.frombuffer(f.read(t.nbytes), dtype, count)
            if data.size != count:
                raise ModelFormatError(f"{t.path}: tensor '{name}' is truncated")
            return data.reshape(dims).copy(), fmt
        return np.frombuffer(self._maps[t.path], dtype, count, t.offset).reshape(dims), fmt

    def f32(self, name: str) -> np.ndarray:
        """A tensor as f32 in PyTorch's [out, in] order."""
        from .tensors import as_f32

        arr, fmt = self.raw(name)
        try:
            return np.ascontiguousarray(as_f32(arr, fmt), np.float32)
        except ValueError as e:
            raise ModelFormatError(f"{self.path}: tensor '{name}' does not decode ({e})") from None


def split_part_paths(path: str) -> list[str]:
    """All part paths of a split file named as llama.cpp names them (stem-0000N-of-0000M.gguf),
    the given one among them; [path] for any other name."""
    m = SPLIT_NAME.match(os.path.basename(path))
    if not m:
        return [path]
    count, folder = int(m["count"]), os.path.dirname(path)
    return [os.path.join(folder, f"{m['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def _other_parts(path: str, count: int, number) -> list[str]:
    """The paths of a split file's other parts (llama.cpp's naming: stem-0000N-of-0000M.gguf)."""
    m = SPLIT_NAME.match(os.path.basename(path))
    if not m or int(m["count"]) != count:
        raise ModelFormatError(f"{path}: metadata says it is one of {count} parts, but its name is not "
                               f"<name>-0000N-of-{count:05d}.gguf")
    if int(m["no"]) != 1 or int(number or 0) != 0:
        first = f"{m['stem']}-00001-of-{count:05d}.gguf"
        raise ModelFormatError(f"{path}: part {m['no']} of a split file; load the first part, {first}")
    parts = split_part_paths(path)[1:]
    missing = [p for p in parts if not os.path.exists(p)]
    if missing:
        raise ModelFormatError(f"{path}: split file part {missing[0]} is missing "
                               f"({len(missing)} of {count} parts missing)")
    return parts
