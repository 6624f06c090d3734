"""GGUF files (llama.cpp's format): recognize one and load it as r1lite's config, tensors (in the
file's own formats, views of the mapped file) and
tokenizer metadata (gguf_reader, gguf_config, gguf_tensors, gguf_tokenizer do the work)."""

from __future__ import annotations

from pathlib import Path

from ..config import check_normalized
from .gguf_config import gguf_config
from .gguf_reader import GGUFFile
from .gguf_tensors import gguf_tensors
from .gguf_tokenizer import tokenizer_metadata


def load_gguf(path) -> tuple[dict, dict, dict]:
    """(config, {r1lite name: (array, format)}, tokenizer metadata strings as r1file keeps them)."""
    g = GGUFFile(path)
    config = check_normalized(gguf_config(g), str(g.path))
    return config, gguf_tensors(g, config), tokenizer_metadata(g)


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False
