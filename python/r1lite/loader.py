"""r1lite.load(): pick the reader for a path and build the Model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import _core
from .config import with_context
from .errors import InvalidArgument, ModelFormatError
from .model import Model
from .resolve import resolve_model


def parse_cpu_list(text: str) -> set[int]:
    """CPUs of a Linux cpu list such as "0-3,8,10-11"."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def physical_cores(cpus: set[int], siblings) -> int:
    """Cores among `cpus`, where siblings(cpu) gives the CPUs sharing that cpu's core (its
    hyperthreads): decode is memory-bound, and a second thread per core only competes for it."""
    cores = {frozenset(siblings(cpu) & cpus) or frozenset([cpu]) for cpu in cpus}
    return max(1, len(cores))


def default_threads() -> int:
    """One thread per physical core this process may run on (as llama.cpp chooses)."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return os.cpu_count() or 1

    def siblings(cpu: int) -> set[int]:
        path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        try:
            with open(path) as f:
                return parse_cpu_list(f.read())
        except (OSError, ValueError):
            return {cpu}
    return physical_cores(set(cpus), siblings)


def parse_device(device) -> int | None:
    """None for "cpu", the device index for "cuda" / "cuda:N"; InvalidArgument otherwise."""
    if device == "cpu":
        return None
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        index = device[5:] or "0"
        if index.isdigit():
            return int(index)
    raise InvalidArgument(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}", "device")


def make_core(config: dict, tensors: dict, threads: int, device: str):
    """The C++ model: on the CPU, or uploaded to a CUDA device (RuntimeError saying why not when
    there is none, or this build has no CUDA backend)."""
    index = parse_device(device)
    if index is None:
        return _core.Model(config, tensors, threads)
    check_device_available(device)
    return _core.DeviceModel(config, tensors, index)


def check_device_available(device: str) -> None:
    """RuntimeError saying why when `device` is a GPU this process cannot use (no device, or a
    build without CUDA), so that a load fails before reading any weights."""
    if parse_device(device) is not None:
        reason = _core.cuda_unavailable_reason()
        if reason:
            raise RuntimeError(f"device={device!r} is not available: {reason}")


KV_CACHE_FORMATS = ("f16", "bf16", "q8_0", "f32")


def parse_kv_cache(kv_cache, device: str) -> str:
    """The KV cache format: f16 on the CPU unless asked otherwise (half the bytes of f32 at
    depth, logits within ~1e-3 of it: BENCHMARKS.md "KV cache formats"), f32 on a GPU (its
    only format for now)."""
    if kv_cache is None:
        return "f16" if device == "cpu" else "f32"
    if kv_cache not in KV_CACHE_FORMATS:
        raise InvalidArgument(f"kv_cache must be one of {', '.join(KV_CACHE_FORMATS)}, got {kv_cache!r}",
                              "kv_cache")
    if device != "cpu" and kv_cache != "f32":
        raise InvalidArgument(f"kv_cache={kv_cache!r}: the KV cache on a GPU is f32 for now", "kv_cache")
    return kv_cache


def load(path, *, threads: int | None = None, context: int | None = None,
         device: str = "cpu", kv_cache: str | None = None) -> Model:
    """Load a model: r1lite's model file (made by `r1lite convert`; mapped, not copied), a
    Hugging Face folder (config.json + safetensors), a GGUF file (computed on in its own formats:
    K-quants and the rest of core/formats.h's table, never dequantized; a split file by its first
    part), a store name or hub id (store.py: "owner/name[:quant]", a hub model converted once), or
    "demo" (SmolLM2-135M-Instruct, fetched once into r1lite's cache).

    threads: worker threads for the matmuls (default: the physical cores this process may use;
    hyperthreads only compete for the memory bandwidth decode is bound by).
    context: most positions the KV cache may hold (default: the model's max_position_embeddings;
    the cache grows in pages as it is used, so this costs nothing up front).
    device: "cpu" (default), or "cuda" / "cuda:N" to upload the weights once to that GPU and run
    the forward pass there (one sequence at a time; needs r1lite built with nvcc present).
    kv_cache: the KV cache's storage format: "f16" (default on the CPU), "bf16", "q8_0" (32-value
    blocks with a scale: half of f16's bytes, a looser approximation) or "f32" (exact; the only
    format on a GPU).
    """
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidArgument(f"threads must be a positive integer, got {threads!r}", "threads")
    parse_device(device)  # bad arguments fail before any reading
    kv_cache = parse_kv_cache(kv_cache, device)
    check_device_available(device)
    p = resolve_model(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        from .formats.hf import load_hf_folder

        from .tokenizer import Tokenizer

        config, tensors, raw = load_hf_folder(p)
        tokenizer = Tokenizer.from_folder(p, model_config=raw)
    else:
        from .formats.gguf import is_gguf
        from .formats.r1file import load_r1_file, tokenizer_from_metadata

        if p.suffix.lower() == ".gguf" and not is_gguf(p):
            raise ModelFormatError(f"{p}: not a GGUF file (it does not start with the GGUF magic "
                                   "bytes); a truncated download or another kind of file?")
        if is_gguf(p):
            from .formats.gguf import load_gguf

            config, tensors, meta = load_gguf(p)
            tokenizer = tokenizer_from_metadata(meta, str(p))
        else:
            config, tensors, tokenizer = load_r1_file(p)
    config = dict(with_context(config, context), kv_cache=kv_cache)
    core = make_core(config, tensors, threads, device)
    return Model(core, config, source=str(p), tokenizer=tokenizer, device=device,
                 summary=summarize(p, config, tensors))


def summarize(path: Path, config: dict, tensors: dict) -> dict:
    """Parameter count, weight formats, bytes on disk and bytes one decode step reads, for
    `r1lite info` and `r1lite bench`."""
    from .benchmark import decode_bytes_per_token
    from .formats.tensors import expected_tensors

    formats: dict[str, int] = {}
    format_bytes: dict[str, int] = {}
    for arr, fmt, *scales in tensors.values():
        formats[fmt] = formats.get(fmt, 0) + 1
        format_bytes[fmt] = format_bytes.get(fmt, 0) + arr.nbytes + sum(a.nbytes for a in scales)
    n_params = sum(int(np.prod(shape)) for shape, _ in expected_tensors(config).values())
    return {"parameters": n_params, "tensor_formats": formats, "format_bytes": format_bytes,
            "file_bytes": sum(f.stat().st_size for f in model_files(path)),
            "decode_bytes_per_token": decode_bytes_per_token(tensors, config)}


def model_files(path: Path) -> list[Path]:
    """The files a model is read from: a folder's .safetensors, a split GGUF's parts, or the file."""
    from .formats.gguf_reader import split_part_paths

    if path.is_dir():
        return [f for f in path.iterdir() if f.suffix == ".safetensors"]
    return [Path(p) for p in split_part_paths(str(path)) if os.path.isfile(p)]


def _with_model(model_or_path, fn, load_kw):
    """fn(model) on a Model, or on one loaded from a path for this call only."""
    model = model_or_path if isinstance(model_or_path, Model) else load(model_or_path, **load_kw)
    return fn(model)


def generate(model_or_path, prompt, *, threads=None, context=None, device="cpu", kv_cache=None, **kw):
    """One-shot raw completion: a path is loaded, used and released. See Model.generate."""
    return _with_model(model_or_path, lambda m: m.generate(prompt, **kw),
                       dict(threads=threads, context=context, device=device, kv_cache=kv_cache))


def chat(model_or_path, messages, *, threads=None, context=None, device="cpu", kv_cache=None, **kw):
    """One-shot chat: a path is loaded, used and released. See Model.chat."""
    return _with_model(model_or_path, lambda m: m.chat(messages, **kw),
                       dict(threads=threads, context=context, device=device, kv_cache=kv_cache))
