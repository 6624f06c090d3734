"""Hugging Face model folders: config.json plus model.safetensors or shards listed in
model.safetensors.index.json. Maps names and layouts into r1lite's scheme."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..config import normalize_hf_config
from ..errors import ModelFormatError
from . import fp8, mla
from .names import hf_name
from .safetensors import SafetensorsFile, format_of
from .tensors import LazyTensor, as_f32, expected_tensors

MATRIX_FORMATS = ("f32", "bf16", "f16")
INDEX_FILE = "model.safetensors.index.json"
SCALE_INV = "_scale_inv"  # an fp8 weight's block scales sit beside it under this suffix


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return data


def _open_checkpoint(folder: Path) -> dict[str, SafetensorsFile]:
    """HF tensor name -> the open file holding it."""
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        weight_map = read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelFormatError(f"{index_path}: no 'weight_map' object")
        files: dict[str, SafetensorsFile] = {}
        where = {}
        for name, shard in weight_map.items():
            if not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith("."):
                raise ModelFormatError(f"{index_path}: bad shard name {shard!r} for '{name}'")
            if shard not in files:
                if not (folder / shard).is_file():
                    raise FileNotFoundError(f"{folder / shard}: shard listed in {INDEX_FILE} is missing")
                files[shard] = SafetensorsFile(folder / shard)
            if name not in files[shard]:
                raise ModelFormatError(
                    f"{folder / shard}: tensor '{name}' listed in {INDEX_FILE} is not in the file")
            where[name] = files[shard]
        return where
    single = folder / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{folder}: neither model.safetensors nor {INDEX_FILE} found")
    f = SafetensorsFile(single)
    return {name: f for name in f.keys()}


class _Source:
    """Where one r1lite tensor comes from: a checkpoint tensor of a known shape, and the layout
    change that turns it into the r1lite tensor (identity for most)."""

    def __init__(self, hf: str, shape: tuple[int, ...], transform=None):
        self.hf, self.shape, self.transform = hf, shape, transform


def _sources(config: dict) -> dict[str, _Source]:
    """r1lite name -> its source, for every tensor the core expects."""
    out = {}
    n_layers = config["num_layers"]
    for name, (shape, _kind) in expected_tensors(config).items():
        out[name] = _Source(hf_name(name, n_layers), shape)
    if config.get("attention") != "mla":
        return out
    h, c = config["num_heads"], config["kv_lora_rank"]
    dn, dr, dv = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
    blocks = [f"layers.{i}." for i in range(n_layers)] + [f"mtp.{d}." for d in range(config["mtp_layers"])]
    for p in blocks:  # the MTP modules' blocks are MLA layers like the others
        src = hf_name(p + "w_uk_t", n_layers)
        out[p + "w_uk_t"] = _Source(src, (h * (dn + dv), c), lambda w: mla.split_kv_b(w, h, dn, dv, "uk_t"))
        out[p + "w_uv"] = _Source(src, (h * (dn + dv), c), lambda w: mla.split_kv_b(w, h, dn, dv, "uv"))
        if config["rope_interleaved"]:
            q = p + ("wq" if config["q_lora_rank"] == 0 else "wq_b")
            out[q].transform = lambda w: mla.reorder_rope_rows(w, h, dn + dr, dr)
            out[p + "wkv_a"].transform = lambda w: mla.reorder_rope_rows(w, 1, c + dr, dr)
    return out


def _reader(f: SafetensorsFile, src: _Source, kind: str, scale_file, fp8_block, mapped: bool):
    """A function returning (array, format) of one r1lite tensor from its source (scale_file holds
    the block scales of an fp8 tensor)."""

    def read():
        raw = f.array(src.hf) if mapped else f.read(src.hf)
        fmt = format_of(f.dtype(src.hf))
        if fmt == "fp8_e4m3":
            scales = scale_file.read(src.hf + SCALE_INV)
            arr, fmt = fp8.dequantize(raw, scales, fp8_block, src.hf), "f32"
        else:
            arr = raw
        if src.transform is not None:
            arr = src.transform(arr)
        return (as_f32(arr, fmt), "f32") if kind == "f32" else (arr, fmt)

    return read


def load_hf_folder(folder, lazy: bool = False) -> tuple[dict, dict, dict]:
    """(r1lite config, {r1lite name: (array, format)}, raw config.json) of a model folder.

    Plain tensors are zero-copy views of the mapped files; FP8 tensors are dequantized to f32
    (ARCH.md §3) and MLA weights re-laid-out (formats/mla.py). lazy=True gives LazyTensor entries
    that read from the files (not the mapping) only when asked, for bounded-memory conversion."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a Hugging Face model folder)")
    raw = read_json(config_path)
    config = normalize_hf_config(raw, str(config_path))
    where = _open_checkpoint(folder)
    if not config["tied_embeddings"] and hf_name("lm_head") not in where:
        config["tied_embeddings"] = True  # re-uploads without lm_head tie it (ARCH.md §7)
    config["mtp_layers"] = _mtp_modules(where, config, raw, folder)
    fp8_block = fp8.block_size(raw, str(config_path))
    kinds = {name: kind for name, (_shape, kind) in expected_tensors(config).items()}
    tensors = {}
    for name, src in _sources(config).items():
        if src.hf not in where:
            raise ModelFormatError(f"{folder}: tensor '{src.hf}' is missing from the checkpoint")
        f = where[src.hf]
        if f.shape(src.hf) != src.shape:
            raise ModelFormatError(
                f"{f.path}: tensor '{src.hf}' has shape {list(f.shape(src.hf))}, "
                f"expected {list(src.shape)} from config.json")
        fmt = format_of(f.dtype(src.hf))
        if fmt not in MATRIX_FORMATS and fmt != "fp8_e4m3":
            raise ModelFormatError(
                f"{f.path}: tensor '{src.hf}' has dtype {f.dtype(src.hf)}; "
                "supported: F32, BF16, F16, F8_E4M3")
        scale_file = None
        if fmt == "fp8_e4m3":
            scale = src.hf + SCALE_INV
            if scale not in where:
                raise ModelFormatError(f"{f.path}: fp8 tensor '{src.hf}' has no '{scale}'")
            scale_file = where[scale]
            if scale_file.dtype(scale) != "F32":
                raise ModelFormatError(
                    f"{scale_file.path}: '{scale}' must be F32, got {scale_file.dtype(scale)}")
        read = _reader(f, src, kinds[name], scale_file, fp8_block, mapped=not lazy)
        tensors[name] = LazyTensor(read) if lazy else read()
    return config, tensors, raw


def _mtp_modules(where: dict, config: dict, raw: dict, folder: Path) -> int:
    """How many of DeepSeek-V3/R1's multi-token-prediction modules (layers num_hidden_layers + d,
    ARCH.md §2 and §12; num_nextn_predict_layers of them) the checkpoint holds: r1lite keeps them for
    speculative decoding (--spec mtp). An incomplete module, and layers past the modules, are
    skipped with a warning (the model runs without them)."""
    n = config["num_layers"]
    present = 0
    if config["architecture"] == "deepseek_v3":
        wanted = raw.get("num_nextn_predict_layers")
        while (wanted is None or present < int(wanted)) and \
                f"model.layers.{n + present}.eh_proj.weight" in where:
            present += 1
    if present:
        sources = _sources(dict(config, mtp_layers=present))
        missing = [src.hf for name, src in sources.items() if name.startswith("mtp.") and src.hf not in where]
        if missing:
            warnings.warn(f"{folder}: skipping layer {n} (an incomplete multi-token-prediction module: "
                          f"'{missing[0]}' is missing; speculative decoding with --spec mtp is off)",
                          stacklevel=3)
            return 0
    extra = f"model.layers.{n + present}."
    if any(name.startswith(extra) for name in where):
        warnings.warn(f"{folder}: skipping layer {n + present} and any after it (not part of the "
                      "model r1lite runs)", stacklevel=3)
    return present
