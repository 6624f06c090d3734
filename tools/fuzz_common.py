"""Shared harness of the fuzzers (tools/fuzz_*.py), which feed mutated bytes to every parser that
reads files from outside. A parser may reject its input only with the exceptions r1lite documents
for bad files (ModelFormatError, UnsupportedModelError, other ValueErrors such as the core's
shape checks, FileNotFoundError for a file the input names); anything else — another exception, a crash, a hang — is a bug the fuzzer reports.

    python tools/fuzz_X.py CORPUS_DIR [-max_total_time=60] [libFuzzer flags]

An empty CORPUS_DIR is first filled with seeds made from tests/fixtures (real small files).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from repo_path import ROOT  # noqa: E402  (r1lite from this checkout when built in place)
FIXTURES = ROOT / "tests" / "fixtures"

SCRATCH = Path(tempfile.mkdtemp(prefix="r1lite-fuzz-"))


def expected_errors():
    from r1lite import ModelFormatError, UnsupportedModelError

    # FileNotFoundError: a shard or file named by the input that does not exist
    return (ModelFormatError, UnsupportedModelError, ValueError, FileNotFoundError)


def write_scratch(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


def run(test_one_input, make_seeds) -> None:
    """Parse argv (corpus dir first), seed an empty corpus, fuzz with atheris."""
    import atheris

    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and not corpus.is_file():  # files given: replay them, no seeding
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for i, seed in enumerate(make_seeds()):
                (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def seed_model_files() -> list[bytes]:
    """Small r1lite model files of the fixtures (several formats, both attention kinds)."""
    import r1lite

    out = []
    for name, fmt in (("qwen2_f32", "q4_0"), ("llama_f16", "f16"), ("deepseek_v3_fp8", "q8_0")):
        path = SCRATCH / f"seed-{name}-{fmt}.safetensors"
        r1lite.convert(FIXTURES / name, path, fmt, progress=False)
        out.append(path.read_bytes())
    return out


def quiet() -> None:
    """Silence warnings the loaders give for odd but valid inputs."""
    import warnings

    warnings.simplefilter("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
