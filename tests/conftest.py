import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT / "tools"))  # make_fixtures for the live oracle test, llamacpp_peer

import llamacpp_peer  # noqa: E402  (tools/)


def llamacpp_bin() -> Path | None:
    """The bin folder of a native llama.cpp build (LLAMACPP_HOME, or ~/.cache/llama.cpp-peer/build),
    or None: the tests that compare with llama.cpp skip without one."""
    return llamacpp_peer.bin_dir("llama-quantize")


def arrays_in_a_child(env: dict, script: str) -> dict:
    """The arrays `script` (run as python -c, with sys.argv[1] the .npz path to save them to) saves
    in a child process whose environment adds `env` (R1LITE_GFNI=0, R1LITE_VBMI=0: CPU features
    are read once per process), with this process's sys.path and the tests folder importable."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "arrays.npz")
        full = dict(os.environ, **env, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), *sys.path]))
        subprocess.run([sys.executable, "-c", script, path], env=full, check=True)
        return dict(np.load(path))


def fixture_dirs():
    dirs = sorted(p for p in FIXTURES.iterdir() if (p / "oracle.npz").is_file())
    assert dirs, f"no fixtures under {FIXTURES}: run tools/make_fixtures.py"
    return dirs


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|"""
    return float(np.abs(got - want).max() / np.abs(want).max())


def write_safetensors(path: Path, tensors: dict) -> None:
    """A safetensors file from {name: (dtype string, array)}, any dtype string (numpy's safetensors
    cannot write F8_E4M3)."""
    header, offset = {}, 0
    for name, (dtype, arr) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _dtype, arr in tensors.values():
            f.write(np.ascontiguousarray(arr).tobytes())


def is_moe(folder: Path) -> bool:
    return bool(json.loads((folder / "config.json").read_text()).get("n_routed_experts"))


def rounded_err(got: np.ndarray, want: np.ndarray, folder: Path) -> float:
    """rel_err for dense models. A mixture of experts is discontinuous: rounding the weights flips
    a near-tied expert choice at some positions, and attention carries the change to later ones,
    so for MoE fixtures this is the 90th percentile over positions of each position's
    max |got - want| / max |want| (the flips are what is left above it)."""
    if not is_moe(folder):
        return rel_err(got, want)
    per_position = np.abs(got - want).max(-1) / np.abs(want).max()
    return float(np.percentile(per_position, 90))


@pytest.fixture
def qwen2_dir():
    return FIXTURES / "qwen2_f32"


@pytest.fixture(scope="session")
def tiny_r1(tmp_path_factory):
    """A tiny random Qwen2 model with the real R1-Distill tokenizer and (January) template."""
    from tiny_model import build_tiny_r1

    return build_tiny_r1(tmp_path_factory.mktemp("tiny_r1"))


@pytest.fixture(scope="session")
def tiny_r1_model(tiny_r1):
    import r1lite

    return r1lite.load(tiny_r1, threads=2, context=4096)
