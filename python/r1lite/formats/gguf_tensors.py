"""The tensors of a GGUF file in r1lite's names and layouts, each in its own format (the file's
blocks, never dequantized): llama q/k rows unpermuted, deepseek2's experts unstacked and MLA
matrices split and reordered (formats/mla.py). Moving whole rows works on blocks as on values;
a tensor whose rows move is read into memory of its own, the rest stay views of the mapped file."""

from __future__ import annotations

import numpy as np

from ..errors import ModelFormatError
from . import mla
from .gguf_reader import GGML_FORMATS, GGUFFile
from .names import gguf_name
from .tensors import expected_tensors

_BLOCKS = {fmt: (block, nbytes) for fmt, block, nbytes in GGML_FORMATS.values()}


def logical_shape(arr: np.ndarray, fmt: str) -> tuple:
    """The shape in values of a tensor held in `fmt` (block formats: bytes [.., rows, row bytes])."""
    if fmt in ("f32", "f16", "bf16"):
        return tuple(arr.shape)
    block, nbytes = _BLOCKS[fmt]
    return (*arr.shape[:-1], arr.shape[-1] // nbytes * block)


def _deepseek2_tensor(g: GGUFFile, config: dict, name: str, stacked: dict) -> tuple:
    """An r1lite tensor of a deepseek2 file: experts cut from the stacked [E, out, in] tensors
    (`stacked` caches the current layer's three), W_UKᵀ / W_UV from attn_k_b / attn_v_b (or from attn_kv_b in
    files written before llama.cpp split it), rope rows in rotate-half order (formats/mla.py)."""
    layer, short = (name.split(".", 2)[1:] if name.startswith("layers.") else (None, name))
    h, c = config["num_heads"], config["kv_lora_rank"]
    dn, dr, dv = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
    if short.startswith("experts."):
        _, e, what = short.split(".")
        gname = f"blk.{layer}.ffn_{what[2:]}_exps.weight"
        if gname not in stacked:
            if stacked.get("layer") != layer:
                stacked.clear()  # one layer's experts at a time
                stacked["layer"] = layer
            stacked[gname] = _need_tensor(g, gname)
        arr, fmt = stacked[gname]
        if arr.ndim < 3 or arr.shape[0] != config["num_experts"]:
            raise ModelFormatError(f"{g.path}: tensor '{gname}' has shape {list(arr.shape)}, expected "
                                   f"{config['num_experts']} stacked experts")
        return arr[int(e)], fmt
    if short in ("w_uk_t", "w_uv"):
        split = f"blk.{layer}.attn_{'k' if short == 'w_uk_t' else 'v'}_b.weight"
        if split in g.tensors:  # [H, C, dn] / [H, dv, C]: rows of the stacked matrix as they lie
            arr, fmt = _need_tensor(g, split)
            return _rows_checked(g, split, arr, h * (c if short == "w_uk_t" else dv)), fmt
        # older files: kv_b's key half must be transposed, which blocks cannot be: f32
        kv_b = _need_f32(g, f"blk.{layer}.attn_kv_b.weight")
        return mla.split_kv_b(kv_b, h, dn, dv, "uk_t" if short == "w_uk_t" else "uv"), "f32"
    if short in ("wq", "wq_b"):
        arr, fmt = _need_tensor(g, gguf_name(name), copy=True)
        return mla.reorder_rope_rows(_rows_checked(g, gguf_name(name), arr, h * (dn + dr)), h, dn + dr, dr), fmt
    if short == "wkv_a":
        arr, fmt = _need_tensor(g, gguf_name(name), copy=True)
        return mla.reorder_rope_rows(_rows_checked(g, gguf_name(name), arr, c + dr), 1, c + dr, dr), fmt
    return _need_tensor(g, gguf_name(name))


def _rows_checked(g: GGUFFile, gname: str, arr: np.ndarray, rows: int) -> np.ndarray:
    """arr [.., in] as [rows, in], checked before rows move (a wrong shape is named, not indexed past)."""
    if arr.ndim < 2 or int(np.prod(arr.shape[:-1])) != rows:
        raise ModelFormatError(f"{g.path}: tensor '{gname}' has shape {list(arr.shape)}, "
                               f"expected {rows} rows")
    return arr.reshape(rows, -1)


def _present(g: GGUFFile, gname: str) -> str:
    if gname not in g.tensors:
        raise ModelFormatError(f"{g.path}: tensor '{gname}' is missing")
    return gname


def _need_tensor(g: GGUFFile, gname: str, copy: bool = False) -> tuple:
    return g.raw(_present(g, gname), copy=copy)


def _need_f32(g: GGUFFile, gname: str) -> np.ndarray:
    return g.f32(_present(g, gname))


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter reorders each llama q/k head's rows from rotate_half pairs (j, j+d/2)
    to adjacent pairs (2j, 2j+1) for its rope kernel; put them back (rows of head h: [h*d, h*d+d))."""
    rows = w.shape[0]
    d = rows // n_heads
    return np.ascontiguousarray(w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def gguf_tensors(g: GGUFFile, config: dict) -> dict:
    """{r1lite name: (array, format)} of every tensor the (normalized) config expects, in the
    file's own formats (norms, biases and the router as f32)."""
    tensors, stacked = {}, {}
    deepseek = config.get("attention") == "mla"
    llama = config["architecture"] == "llama"
    for name, (shape, kind) in expected_tensors(config).items():
        short = name.split(".")[-1]
        moves_rows = llama and short in ("wq", "bq", "wk", "bk")
        if deepseek:
            arr, fmt = _deepseek2_tensor(g, config, name, stacked)
        else:
            arr, fmt = _need_tensor(g, gguf_name(name), copy=moves_rows)
        if logical_shape(arr, fmt) != shape:
            raise ModelFormatError(f"{g.path}: tensor for '{name}' has shape {list(logical_shape(arr, fmt))}, "
                                   f"expected {list(shape)}")
        if moves_rows:
            heads = config["num_heads"] if short in ("wq", "bq") else config["num_kv_heads"]
            arr = _unpermute_rope_rows(arr, heads)
        if kind == "f32" and fmt != "f32":
            arr, fmt = _need_f32(g, gguf_name(name)).reshape(shape), "f32"
        elif fmt not in ("f32", "f16", "bf16"):
            arr = np.ascontiguousarray(arr).reshape(shape[0], -1)
        tensors[name] = (arr, fmt)
    return tensors
