"""A fresh random checkpoint of each architecture, compared with transformers directly.

Runs where torch and transformers are importable (CI installs both)."""

import numpy as np
import pytest

import r1lite
from conftest import rel_err

torch = pytest.importorskip("torch", reason="the live oracle needs torch")
pytest.importorskip("transformers", reason="the live oracle needs transformers")

import make_fixtures  # noqa: E402  (tools/, put on sys.path by conftest)

LIVE_SPECS = {
    "qwen2_bf16": dict(arch="qwen2", dtype="bfloat16", vocab=203, hidden=96, heads=8, kv_heads=2,
                       inter=120, layers=3, tied=False),
    "llama3_f32_tied": dict(arch="llama", dtype="float32", vocab=211, hidden=66, heads=3,
                            kv_heads=1, inter=90, layers=2, tied=True, llama3=True),
}


@pytest.mark.parametrize("name", LIVE_SPECS)
def test_fresh_checkpoint_matches_transformers(tmp_path, name):
    spec = LIVE_SPECS[name]
    seed = int(np.random.default_rng().integers(1 << 30))
    folder = make_fixtures.make_fixture(name, spec, out_root=tmp_path, seed=seed)
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(folder)
    for chunk in (None, 5):
        got = model.logits(oracle["tokens"], chunk=chunk)
        assert rel_err(got, oracle["logits"]) <= 1e-4, f"seed {seed}"
