"""r1lite.load(): pick the reader for a path and build the Model."""

from __future__ import annotations

import os
from pathlib import Path

from . import _core
from .config import with_context
from .model import Model


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load(path, *, threads: int | None = None, context: int | None = None) -> Model:
    """Load a model: a Hugging Face folder (config.json + safetensors).

    threads: worker threads for the matmuls (default: this machine's cores).
    context: most positions the KV cache may hold (default: the model's max_position_embeddings;
    the cache grows in pages as it is used, so this costs nothing up front).
    """
    if threads is None:
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        from .formats.hf import load_hf_folder

        config, tensors, _raw = load_hf_folder(p)
    else:
        raise ValueError(f"{p}: not a model folder (expected a Hugging Face folder with config.json)")
    config = with_context(config, context)
    core = _core.Model(config, tensors, threads)
    return Model(core, config, source=str(p))
