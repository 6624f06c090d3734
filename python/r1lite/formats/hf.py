"""Hugging Face model folders: config.json plus model.safetensors or shards listed in
model.safetensors.index.json. Maps names and layouts into r1lite's scheme."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import normalize_hf_config
from ..errors import ModelFormatError
from .names import hf_name
from .safetensors import SafetensorsFile, format_of
from .tensors import as_f32, expected_tensors

MATRIX_FORMATS = ("f32", "bf16", "f16")
INDEX_FILE = "model.safetensors.index.json"


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


def load_hf_folder(folder) -> tuple[dict, dict, dict]:
    """(r1lite config, {r1lite name: (array, format)}, raw config.json) of a model folder."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a Hugging Face model folder)")
    raw = read_json(config_path)
    config = normalize_hf_config(raw, str(config_path))
    where = _open_checkpoint(folder)
    if not config["tied_embeddings"] and hf_name("lm_head") not in where:
        config["tied_embeddings"] = True  # re-uploads without lm_head tie it (ARCH.md §7)
    tensors = {}
    for name, (shape, kind) in expected_tensors(config).items():
        hf = hf_name(name)
        if hf not in where:
            raise ModelFormatError(f"{folder}: tensor '{hf}' is missing from the checkpoint")
        f = where[hf]
        if f.shape(hf) != shape:
            raise ModelFormatError(
                f"{f.path}: tensor '{hf}' has shape {list(f.shape(hf))}, "
                f"expected {list(shape)} from config.json")
        fmt = format_of(f.dtype(hf))
        if fmt not in MATRIX_FORMATS:
            raise ModelFormatError(
                f"{f.path}: tensor '{hf}' has dtype {f.dtype(hf)}; supported: F32, BF16, F16")
        arr = f.array(hf)
        tensors[name] = (as_f32(arr, fmt), "f32") if kind == "vector" else (arr, fmt)
    return config, tensors, raw
