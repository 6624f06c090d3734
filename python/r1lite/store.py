"""r1lite's model store, as ollama users know one: `r1lite pull` downloads a Hugging Face hub model
and converts it once into the store; `r1lite list` / `r1lite rm` show and remove what it holds;
a store name works wherever a model path does.

Layout: $R1LITE_HOME/models/<owner>--<name>/<quant>.safetensors (R1LITE_HOME defaults to
~/.cache/r1lite). A model's store name is "owner/name:quant"; "owner/name" names its default
quant (q8_0, or R1LITE_HUB_QUANT) or its only one, and "name[:quant]" works while it is unique.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .resolve import HUB_ID, home, hub_snapshot

SUFFIX = ".safetensors"


def store_dir() -> Path:
    return home() / "models"


def default_quant() -> str:
    return os.environ.get("R1LITE_HUB_QUANT") or "q8_0"


@dataclass
class Entry:
    """One converted model in the store."""
    repo_id: str  # owner/name
    quant: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.repo_id}:{self.quant}"

    def describe(self) -> dict:
        """Architecture and context from the file's header (no weights read)."""
        from .formats.safetensors import SafetensorsFile

        try:
            config = json.loads(SafetensorsFile(self.path).metadata.get("r1lite.config", "{}"))
        except (OSError, ValueError):
            config = {}
        return {"name": self.name, "architecture": config.get("architecture", "?"),
                "format": self.quant, "size": self.path.stat().st_size,
                "context": config.get("max_position_embeddings", "?"), "path": str(self.path)}


def entry_path(repo_id: str, quant: str) -> Path:
    return store_dir() / repo_id.replace("/", "--") / f"{quant}{SUFFIX}"


def entries() -> list[Entry]:
    """Every model in the store, by name."""
    found = []
    root = store_dir()
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and "--" in folder.name:
                repo_id = folder.name.replace("--", "/", 1)
                found += [Entry(repo_id, f.name[:-len(SUFFIX)], f)
                          for f in sorted(folder.glob(f"*{SUFFIX}"))]
    return found


def split_name(name: str) -> tuple[str, str | None]:
    """("owner/name" or "name", quant or None) of a store name."""
    base, _, quant = name.partition(":")
    return base, quant or None


def looks_like_store_name(name) -> bool:
    """Whether a model argument could be a store name: "owner/name[:quant]" or "name:quant"."""
    if not isinstance(name, str) or Path(name).exists():
        return False
    base, quant = split_name(name)
    return bool(HUB_ID.match(base)) or (quant is not None and "/" not in base and bool(base))


def find(name: str) -> Entry | None:
    """The store entry a name means, None when the store has no such model; ValueError when the
    name is ambiguous (several quants or owners), naming the choices."""
    base, quant = split_name(name)
    matches = [e for e in entries()
               if (e.repo_id == base if "/" in base else e.repo_id.split("/", 1)[1] == base)
               and (quant is None or e.quant == quant)]
    if len(matches) > 1 and quant is None:
        preferred = [e for e in matches if e.quant == default_quant()]
        if len({e.repo_id for e in matches}) == 1 and preferred:
            return preferred[0]
    if len(matches) > 1:
        raise ValueError(f"'{name}' matches several models in the store: "
                         f"{', '.join(e.name for e in matches)}; name one of them")
    return matches[0] if matches else None


def pull(repo_id: str, quant: str | None = None, *, allow_requantize: bool = False) -> Entry:
    """Download a hub model (huggingface_hub, its progress bars) and convert it into the store
    (once: a model already there is kept). OSError saying why when the hub cannot provide it."""
    from .converter import convert
    from .recipes import RECIPES

    quant = quant or default_quant()
    if not HUB_ID.match(repo_id):
        raise ValueError(f"'{repo_id}' is not a Hugging Face hub id (owner/name)")
    if quant not in RECIPES:
        raise ValueError(f"unknown quantization {quant!r} (choose from {', '.join(RECIPES)})")
    entry = Entry(repo_id, quant, entry_path(repo_id, quant))
    if entry.path.is_file():
        return entry
    folder = hub_snapshot(repo_id)
    entry.path.parent.mkdir(parents=True, exist_ok=True)
    print(f"r1lite: converting {repo_id} to {quant} once, into {entry.path}", file=sys.stderr)
    convert(folder, entry.path, quant, allow_requantize=allow_requantize)
    return entry


def remove(name: str) -> Entry:
    """Delete a store entry (its file; its folder once empty). ValueError when there is none."""
    entry = find(name)
    if entry is None:
        raise ValueError(f"no model '{name}' in the store ({store_dir()}); `r1lite list` shows it")
    entry.path.unlink()
    if not any(entry.path.parent.iterdir()):
        entry.path.parent.rmdir()
    return entry


def model_path(name) -> Path | None:
    """The file a model argument names in the store, pulling a hub id that is not there yet
    (with the default quant); None when the name is not a store or hub name."""
    if not looks_like_store_name(name):
        return None
    entry = find(name)
    if entry is not None:
        return entry.path
    base, quant = split_name(name)
    if HUB_ID.match(base):
        return pull(base, quant).path
    return None
