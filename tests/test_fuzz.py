"""A short run of every fuzzer (tools/fuzz_*.py) from its seed corpus: any input that makes a
parser fail other than with r1lite's documented errors fails the test (ROBUSTNESS.md has the long
runs). Inputs that once broke a parser are replayed first, from tests/fuzz_regressions/."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
SECONDS = 8


@pytest.mark.parametrize("target", ["safetensors", "model_file", "gguf", "config", "imatrix"])
def test_fuzzer_finds_nothing(target, tmp_path):
    corpus = tmp_path / "corpus"
    cmd = [sys.executable, str(ROOT / "tools" / f"fuzz_{target}.py"), str(corpus),
           f"-max_total_time={SECONDS}", "-timeout=20", f"-artifact_prefix={tmp_path}/",
           "-print_final_stats=1"]
    if (REGRESSIONS / target).is_dir():
        replay = subprocess.run(cmd[:2] + sorted(str(p) for p in (REGRESSIONS / target).iterdir()),
                                capture_output=True, text=True, timeout=300)
        assert replay.returncode == 0, replay.stderr[-3000:]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS + 240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stat::number_of_executed_units" in run.stderr
