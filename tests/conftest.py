import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT / "tools"))  # make_fixtures for the live oracle test


def fixture_dirs():
    dirs = sorted(p for p in FIXTURES.iterdir() if (p / "oracle.npz").is_file())
    assert dirs, f"no fixtures under {FIXTURES}: run tools/make_fixtures.py"
    return dirs


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|"""
    return float(np.abs(got - want).max() / np.abs(want).max())


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
