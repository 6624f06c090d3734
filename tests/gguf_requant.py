"""GGUF files in any format of the table, made in tests the way llama-quantize makes them: every
metadata entry of a source GGUF copied, its matrices requantized by a recipe (r1lite.recipes,
which follows llama.cpp's choices; r1lite's planar q8_0 / q4_0 become GGUF's Q8_0 / Q4_0 blocks)
with r1lite's block quantizers (byte-exact with ggml's reference quantizers), optionally split
into parts as llama.cpp's gguf-split writes them."""

from __future__ import annotations

import numpy as np

from r1lite.formats.block_quantizers import quantize_blocks
from r1lite.formats.gguf import load_gguf
from r1lite.formats.gguf_reader import GGUFFile
from r1lite.formats.names import gguf_name
from r1lite.quant import TABLE
from r1lite.recipes import gguf_tensor_formats

gguf = __import__("gguf")


def recipe_formats(src, quant: str) -> dict:
    """{GGUF tensor name: r1lite format} of a recipe applied to a GGUF file's model."""
    config, _, _ = load_gguf(src)
    return {gguf_name(name): fmt for name, fmt in gguf_tensor_formats(config, quant).items()}


def copy_metadata(g: GGUFFile, w) -> None:
    """Every metadata entry of a GGUF file (but the architecture and alignment the writer sets)
    into a gguf.GGUFWriter, with its types."""
    for key, value in g.metadata.items():
        if key in ("general.architecture", "general.alignment"):
            continue
        vtype, element = g.metadata_types[key]
        vtype = gguf.GGUFValueType(vtype)
        sub = gguf.GGUFValueType(element) if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, value, vtype, sub)


def requantize_gguf(src, out, formats: dict, *, split_max_tensors: int = 0) -> list:
    """Write `src` again at `out` with each tensor named in `formats` in that format (the others
    as they are). Returns the paths written (several with split_max_tensors)."""
    g = GGUFFile(src)
    arch = g.get("general.architecture")
    w = gguf.GGUFWriter(str(out), arch, split_max_tensors=split_max_tensors)
    copy_metadata(g, w)
    for name, t in g.tensors.items():
        fmt = formats.get(name)
        shape = tuple(int(d) for d in reversed(t.shape))
        if fmt is None or fmt == g.format_of(name):
            arr, _ = g.raw(name)
            w.add_tensor(name, np.ascontiguousarray(arr), raw_dtype=gguf.GGMLQuantizationType[t.type_name])
            continue
        values = g.f32(name)
        if fmt == "f32":
            w.add_tensor(name, np.ascontiguousarray(values, np.float32))
        elif fmt == "f16":
            w.add_tensor(name, values.astype(np.float16))
        else:
            blocks = quantize_blocks(fmt, values.reshape(-1, shape[-1]))  # bytes [rows, row bytes]
            w.add_tensor(name, blocks.reshape(*shape[:-1], -1),
                         raw_dtype=gguf.GGMLQuantizationType[TABLE[fmt]["gguf_name"]])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if not split_max_tensors:
        return [out]
    return sorted(out.parent.glob(out.stem + "-*-of-*.gguf"))
