"""`r1lite info --plan`: the bytes it predicts from a config alone equal what a converted model
file really holds and reads (weights per recipe, decode bytes per token, KV cache per position),
on dense and MLA + MoE fixtures; R1 671B planned from its config."""

import subprocess
import sys
from pathlib import Path

import pytest

import r1lite
from conftest import FIXTURES
from r1lite.plan import cache_bytes_per_token, plan, read_config, recipe_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("fixture,recipe", [
    ("qwen2_f32", "q4_0"), ("qwen2_f32", "q8_0"), ("qwen3_f32", "q4_k_m"),
    ("deepseek_v3_f32", "q6_k"), ("deepseek_v3_f32", "q4_0"), ("llama3_f32", "f16"),
    ("deepseek_v3_f32", "moe-q2_k"),
])
def test_planned_bytes_are_the_converted_files(fixture, recipe, tmp_path):
    out = r1lite.convert(FIXTURES / fixture, tmp_path / "m.safetensors", recipe, progress=False)
    model = r1lite.load(out, threads=1, kv_cache="q8_0")
    config = read_config(FIXTURES / fixture)
    total, read = recipe_bytes(config, recipe)
    assert total == sum(model.summary["format_bytes"].values())
    assert read == model.summary["decode_bytes_per_token"]
    assert cache_bytes_per_token(config, "q8_0") == model.kv_bytes_per_token
    from_file = read_config(out)  # the file's own metadata, no weights read
    assert {k: v for k, v in from_file.items() if k not in ("kv_cache", "context")} == \
        {k: v for k, v in model.config.items() if k in from_file and k not in ("kv_cache", "context")}


def test_plan_rows():
    config = read_config(FIXTURES / "qwen2_f32")
    rows = plan(config, context=1000, kv_cache="f16", bandwidth=10e9, recipes=["q8_0", "q4_0"])
    assert [r["recipe"] for r in rows] == ["q8_0", "q4_0"]
    q8, q4 = rows
    assert q8["cache"] == q4["cache"] == 1000 * cache_bytes_per_token(config, "f16")
    assert q4["weights"] < q8["weights"] and q4["memory"] == q4["weights"] + q4["cache"]
    assert q4["decode_tok_s"] == pytest.approx(10e9 / (q4["read_per_token"] + q4["cache"]))


def test_r1_671b_from_its_config_alone():
    r = subprocess.run([sys.executable, "-m", "r1lite", "info", str(ROOT / "tools" / "bench_configs" / "deepseek-r1.json"),
                        "--plan", "--ram", "400", "-c", "32768", "--bandwidth", "90"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "671.03 B parameters" in r.stdout and "256 experts (8 per token)" in r.stdout
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[3:]}
    # q4_0: 4.5 bits a weight (the routers f32), 61 layers x 576 f16 values of latent cache a position
    assert rows["q4_0"][1:3] == ["378.29", "GB"] and rows["q4_0"][5:7] == ["2.30", "GB"]
    assert rows["q4_0"][-1] == "yes" and rows["q8_0"][-1] == "no"
    # the routed experts at 2.06 / 2.31 bits (IQ2_XXS gate/up, IQ2_XS down), the rest as moe-q2_k
    assert rows["moe-iq2_xxs"][1:3] == ["186.02", "GB"] and rows["moe-iq2_xxs"][3:5] == ["15.58", "GB"]
    assert rows["iq2_xxs"][1:3] == ["174.36", "GB"]


def test_plan_needs_a_local_config(tmp_path):
    r = subprocess.run([sys.executable, "-m", "r1lite", "info", str(tmp_path / "none"), "--plan"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "needs a local config.json" in r.stderr


def test_expert_aware_recipes():
    """moe-q2_k / moe-q3_k: routed experts at 2-3 bits, what every token reads at 4-6."""
    from r1lite.recipes import tensor_formats

    config = read_config(ROOT / "tools" / "bench_configs" / "deepseek-r1.json")
    f = tensor_formats(config, "moe-q2_k")
    assert f["layers.3.experts.0.w_gate"] == f["layers.60.experts.255.w_up"] == "q2_k"
    assert f["layers.3.experts.7.w_down"] == "q3_k"
    assert f["layers.3.shared.w_gate"] == f["layers.0.w_down"] == f["layers.5.wq_a"] == "q4_k"
    assert f["lm_head"] == "q6_k" and f["tok_embd"] == "q4_k"
    assert f["layers.3.router"] == "f32"
    g = tensor_formats(config, "moe-q3_k")
    assert (g["layers.3.experts.0.w_gate"], g["layers.3.experts.0.w_down"], g["layers.3.wo"]) == ("q3_k", "q4_k", "q5_k")
    i = tensor_formats(config, "moe-iq2_xxs")
    assert i["layers.3.experts.0.w_gate"] == i["layers.60.experts.255.w_up"] == "iq2_xxs"
    assert i["layers.3.experts.7.w_down"] == "iq2_xs"  # one step up
    assert i["layers.3.shared.w_gate"] == i["layers.0.w_down"] == i["layers.5.wq_a"] == "q4_k"
    assert i["lm_head"] == i["layers.4.w_uv"] == "q6_k" and i["tok_embd"] == "q4_k"
    assert i["layers.3.router"] == "f32"
    dense = read_config(FIXTURES / "qwen2_f32")
    for recipe in ("moe-q2_k", "moe-iq2_xxs"):
        with pytest.raises(ValueError, match="mixture-of-experts"):
            tensor_formats(dense, recipe)
        assert recipe not in [r["recipe"] for r in plan(dense, context=8, bandwidth=1e9)]
