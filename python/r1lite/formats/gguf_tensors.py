"""The tensors of a GGUF file in r1lite's names and layouts: llama q/k rows unpermuted, deepseek2's
experts unstacked and MLA matrices split and reordered (formats/mla.py)."""

from __future__ import annotations

import numpy as np

from ..errors import ModelFormatError
from . import mla
from .gguf_reader import GGUFFile
from .names import gguf_name
from .tensors import expected_tensors


def _deepseek2_tensor(g: GGUFFile, config: dict, name: str, stacked: dict) -> np.ndarray:
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
        return stacked[gname][int(e)]
    if short in ("w_uk_t", "w_uv"):
        split = f"blk.{layer}.attn_{'k' if short == 'w_uk_t' else 'v'}_b.weight"
        if split in g.tensors:
            arr = _need_tensor(g, split)
            return arr.reshape(h * c, dn) if short == "w_uk_t" else arr.reshape(h * dv, c)
        kv_b = _need_tensor(g, f"blk.{layer}.attn_kv_b.weight")
        return mla.split_kv_b(kv_b, h, dn, dv, "uk_t" if short == "w_uk_t" else "uv")
    arr = _need_tensor(g, gguf_name(name))
    if short in ("wq", "wq_b"):
        arr = mla.reorder_rope_rows(arr, h, dn + dr, dr)
    elif short == "wkv_a":
        arr = mla.reorder_rope_rows(arr, 1, c + dr, dr)
    return arr


def _need_tensor(g: GGUFFile, gname: str) -> np.ndarray:
    if gname not in g.tensors:
        raise ModelFormatError(f"{g.path}: tensor '{gname}' is missing")
    return g.f32(gname)


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter reorders each llama q/k head's rows from rotate_half pairs (j, j+d/2)
    to adjacent pairs (2j, 2j+1) for its rope kernel; put them back (rows of head h: [h*d, h*d+d))."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)




def gguf_tensors(g: GGUFFile, config: dict) -> dict:
    """{r1lite name: (f32 array, "f32")} of every tensor the (normalized) config expects."""
    tensors, stacked = {}, {}
    deepseek = config.get("attention") == "mla"
    for name, (shape, kind) in expected_tensors(config).items():
        arr = _deepseek2_tensor(g, config, name, stacked) if deepseek else _need_tensor(g, gguf_name(name))
        if arr.shape != shape:
            raise ModelFormatError(f"{g.path}: tensor for '{name}' has shape {list(arr.shape)}, "
                                   f"expected {list(shape)}")
        if config["architecture"] == "llama" and name.split(".")[-1] in ("wq", "bq", "wk", "bk"):
            heads = config["num_heads"] if name.endswith(("wq", "bq")) else config["num_kv_heads"]
            arr = _unpermute_rope_rows(arr, heads)
        tensors[name] = (arr, "f32")
    return tensors
