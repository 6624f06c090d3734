"""`r1lite info MODEL --plan`: what each weight recipe costs a model before anything is converted
or loaded — bytes in memory, bytes one decode step reads, the KV cache at a context length — and
the decode speed those bytes allow at the machine's measured read bandwidth. Needs only the
model's config (a config.json is enough: R1 671B is planned without its 700 GB of weights).

Decode reads every matrix once per token except the embedding table (one row; all of it when it
is also the output head) and the routed experts, of which each MoE layer reads experts_per_token
(benchmark.decode_bytes_per_token counts a loaded model the same way), plus the whole KV cache up
to the current position. The bound is bandwidth / bytes read; r1lite's decode reaches 80-95% of
it on this project's machine (BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _core
from .config import check_normalized, normalize_hf_config
from .quant import TABLE
from .recipes import RECIPES, applies, tensor_formats

FLOAT_BYTES = {"f32": 4, "f16": 2, "bf16": 2}


def read_config(path) -> dict:
    """A model's normalized config without its weights: from a config.json file, a folder holding
    one, a GGUF file's header, or an r1lite file's metadata (demo: the demo GGUF)."""
    from .resolve import DEMO_NAMES, demo_model_path

    p = demo_model_path() if path in DEMO_NAMES else Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder (--plan needs a local config.json, "
                                "model folder or model file)")
    if p.suffix == ".json":
        from .formats.hf import read_json

        return normalize_hf_config(read_json(p), str(p))
    from .formats.gguf import is_gguf

    if is_gguf(p):
        from .formats.gguf_config import gguf_config
        from .formats.gguf_reader import GGUFFile

        return check_normalized(gguf_config(GGUFFile(p)), str(p))
    from .formats.r1file import _json_meta
    from .formats.safetensors import SafetensorsFile

    return check_normalized(_json_meta(SafetensorsFile(p).metadata, "r1lite.config", str(p)), str(p))


def tensor_bytes(fmt: str, shape) -> int:
    """Bytes of a tensor of `shape` held in `fmt` (rows padded to whole blocks, scales included)."""
    shape = tuple(int(s) for s in shape)
    if fmt in FLOAT_BYTES or len(shape) == 1:
        return int(np.prod(shape)) * FLOAT_BYTES.get(fmt, 4)
    block = TABLE[fmt]["block"]
    padded = int(np.prod(shape[:-1])) * -(-shape[-1] // block) * block
    return int(padded * TABLE[fmt]["bits_per_weight"]) // 8  # planar formats: scales included


def recipe_bytes(config: dict, recipe: str) -> tuple[int, int]:
    """(bytes of the weights in memory, bytes of weights one decode step reads) under `recipe`."""
    from .formats.tensors import expected_tensors

    formats = tensor_formats(config, recipe)
    total = read = 0
    k, experts = config.get("experts_per_token", 0), config.get("num_experts", 0)
    for name, (shape, _kind) in expected_tensors(config).items():
        n = tensor_bytes(formats.get(name, "f32"), shape)
        total += n
        if name == "tok_embd":
            read += n if config["tied_embeddings"] else 0
        elif ".experts." in name:
            read += n * k / experts  # every routed expert of a layer is the same size
        else:
            read += n
    return total, int(read)


def cache_bytes_per_token(config: dict, kv_cache: str) -> int:
    return int(_core.config_facts(dict(config, kv_cache=kv_cache))["cache_bytes_per_token"])


def plan(config: dict, *, context: int, kv_cache: str = "f16", bandwidth: float,
         recipes=None) -> list[dict]:
    """One row per recipe: weights, read per token, cache at `context`, memory, decode bound
    (tok/s at `bandwidth` bytes/s with the cache full to `context`)."""
    cache = cache_bytes_per_token(config, kv_cache) * context
    rows = []
    for recipe in recipes or [r for r in RECIPES if applies(config, r)]:
        total, read = recipe_bytes(config, recipe)
        rows.append({"recipe": recipe, "weights": total, "read_per_token": read, "cache": cache,
                     "memory": total + cache, "decode_tok_s": bandwidth / (read + cache)})
    return rows


def format_plan(rows: list[dict], *, ram: float | None) -> list[str]:
    """The table `r1lite info --plan` prints (GB = 1e9 bytes; MB for small models)."""
    scale, unit = (1e9, "GB") if max(r["memory"] for r in rows) >= 1e8 else (1e6, "MB")
    width = max(8, *(len(r["recipe"]) for r in rows))
    out = [f"{'recipe':{width}} {'weights':>10} {'read/token':>11} {'KV cache':>10} {'memory':>10}"
           f" {'decode bound':>13}" + ("  fits" if ram else "")]
    for r in rows:
        line = (f"{r['recipe']:{width}} {r['weights'] / scale:>7.2f} {unit} {r['read_per_token'] / scale:>8.2f} {unit}"
                f" {r['cache'] / scale:>7.2f} {unit} {r['memory'] / scale:>7.2f} {unit}"
                f" {r['decode_tok_s']:>7.2f} tok/s")
        if ram:
            line += "  yes" if r["memory"] <= ram else "  no"
        out.append(line)
    return out


def describe_config(config: dict) -> str:
    """One line: architecture, parameters, layers, experts."""
    from .formats.tensors import expected_tensors

    params = sum(int(np.prod(s)) for s, _ in expected_tensors(config).values())
    experts = (f", {config['num_experts']} experts ({config['experts_per_token']} per token)"
               if config.get("num_experts") else "")
    return (f"{config['architecture']}, {params / 1e9:.2f} B parameters, {config['num_layers']} layers"
            f"{experts}, trained context {config['max_position_embeddings']}")
