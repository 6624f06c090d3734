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
    "qwen3_f32_tied": dict(arch="qwen3", dtype="float32", vocab=173, hidden=60, heads=6, kv_heads=3,
                           head_dim=18, inter=84, layers=2, tied=True),
    "llama3_f32_tied": dict(arch="llama", dtype="float32", vocab=211, hidden=66, heads=3,
                            kv_heads=1, inter=90, layers=2, tied=True, llama3=True),
    "deepseek_v3_fp8": dict(arch="deepseek_v3", dtype="float32", vocab=181, hidden=68, heads=4,
                            q_lora=30, kv_lora=34, nope=10, rope=6, v=12, inter=88, moe_inter=22,
                            experts=12, shared=1, top_k=4, n_group=3, topk_group=2, layers=3,
                            first_dense=1, fp8_block=(16, 40),
                            yarn=dict(factor=3.0, mscale=1.0, mscale_all_dim=1.0)),
    "deepseek_v2_bf16": dict(arch="deepseek_v2", dtype="bfloat16", vocab=97, hidden=48, heads=2,
                             q_lora=None, kv_lora=20, nope=8, rope=4, v=10, inter=60,
                             moe_inter=14, experts=6, shared=2, top_k=2, n_group=3, topk_group=2,
                             layers=2, first_dense=1, topk_method="group_limited_greedy",
                             scale=1.0, yarn=dict(factor=2.0, mscale=0.707, mscale_all_dim=0.707)),
}


@pytest.mark.parametrize("name", LIVE_SPECS)
def test_fresh_checkpoint_matches_transformers(tmp_path, name):
    spec = LIVE_SPECS[name]
    seed = int(np.random.default_rng().integers(1 << 30))
    folder = make_fixtures.make_fixture(name, spec, out_root=tmp_path, seed=seed)
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(folder, kv_cache="f32")
    for chunk in (None, 5):
        got = model.logits(oracle["tokens"], chunk=chunk)
        assert rel_err(got, oracle["logits"]) <= 1e-4, f"seed {seed}"
