"""DeepSeek V2/V3 specifics beyond the logits fixtures: R1's derived constants, the latent cache,
FP8 decoding, the re-layout of MLA weights, and the importer's errors."""

import json
import shutil

import numpy as np
import pytest

import r1lite
from r1lite import ModelFormatError, UnsupportedModelError, _core
from r1lite.config import normalize_hf_config
from r1lite.formats import fp8, mla
from conftest import FIXTURES, ROOT, rel_err, write_safetensors

# DeepSeek-R1's config.json (ARCH.md §1)
R1_CONFIG = json.loads((ROOT / "tools" / "bench_configs" / "deepseek-r1.json").read_text())


def test_r1_config_constants():
    """ARCH.md §4-5: R1's YaRN frequencies, softmax scale and cache size."""
    cfg = normalize_hf_config(R1_CONFIG, "R1")
    assert cfg["attention"] == "mla" and cfg["router"] == "sigmoid_group_top2"
    assert cfg["rope_attn_factor"] == pytest.approx(1.0)
    # softmax scale = 192^-0.5 · m², m = 0.1·ln(40) + 1 = 1.3688879: 0.1352338
    assert cfg["attn_scale_mult"] / 192 ** 0.5 == pytest.approx(0.1352338, rel=1e-6)
    facts = _core.config_facts(cfg)
    inv = np.array(facts["rope_inv_freq"])
    assert inv.shape == (32,)
    np.testing.assert_allclose(inv[[0, 1, 10, 11, 31]],
                               [1.0, 0.74989, 0.0562341, 0.0390069, 3.33380e-06], rtol=2e-5)
    # the cache: 512 latent + 64 rope values per token per layer, 71x less than expanded K/V
    assert facts["cache_values_per_token_per_layer"] == 576
    assert 128 * (192 + 128) / 576 == pytest.approx(71.1, abs=0.05)


def test_v2_lite_scale():
    """ARCH.md §10: V2-Lite's mscale 0.707 gives a softmax scale of 0.1147214."""
    cfg = dict(R1_CONFIG, architectures=["DeepseekV2ForCausalLM"], q_lora_rank=None,
               topk_method="greedy", scoring_func="softmax", n_group=1, topk_group=1,
               norm_topk_prob=False, routed_scaling_factor=1.0)
    cfg["rope_scaling"] = dict(cfg["rope_scaling"], mscale=0.707, mscale_all_dim=0.707)
    norm = normalize_hf_config(cfg, "V2-Lite")
    assert norm["attn_scale_mult"] / 192 ** 0.5 == pytest.approx(0.1147214, rel=1e-5)
    assert norm["rope_attn_factor"] == pytest.approx(1.0)
    assert norm["router"] == "softmax_greedy" and norm["q_lora_rank"] == 0


def test_latent_cache_is_the_only_attention_cache():
    folder = FIXTURES / "deepseek_v3_f32"
    cfg = json.loads((folder / "config.json").read_text())
    model = r1lite.load(folder, threads=2, kv_cache="f32")
    per_layer = cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]
    assert model.kv_bytes_per_token == cfg["num_hidden_layers"] * per_layer * 4
    model.logits(np.arange(10))
    assert model.cache_bytes == 256 * model.kv_bytes_per_token  # one page of 256 positions
    dense = r1lite.load(FIXTURES / "qwen2_f32", threads=1)  # the default cache: f16
    assert dense.config["kv_cache"] == "f16"
    assert dense.kv_bytes_per_token == 2 * 2 * 2 * 12 * 2  # layers · k,v · kv heads · head_dim · f16
    assert r1lite.load(folder, threads=1).kv_bytes_per_token == cfg["num_hidden_layers"] * per_layer * 2


def test_e4m3_values():
    """ARCH.md §3, by enumeration of the format's definition."""
    t = fp8.E4M3_TO_F32
    assert t[0x38] == 1.0 and t[0x7E] == 448.0 and t[0xFE] == -448.0
    assert t[0x01] == 2.0 ** -9 and t[0x08] == 2.0 ** -6 and t[0x00] == 0.0 and t[0x80] == 0.0
    assert np.isnan(t[0x7F]) and np.isnan(t[0xFF])
    assert np.isfinite(t).sum() == 254 and np.abs(t[np.isfinite(t)]).max() == 448.0


def test_fp8_block_dequantization_with_partial_blocks():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((70, 45)).astype(np.float32) * rng.uniform(0.01, 10, (70, 1)).astype(np.float32)
    w8, scale = fp8.quantize(w, (32, 16))
    assert scale.shape == (3, 3) and w8.dtype == np.uint8
    back = fp8.dequantize(w8, scale, (32, 16), "w")
    # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for normal values
    big = np.abs(w) > 1e-2 * np.abs(w).max()
    assert np.all(np.abs(back - w)[big] <= np.abs(w)[big] * 2.0 ** -4 + 1e-6)
    # every block's scale applies to its own (partial) block only
    scale2 = scale.copy()
    scale2[2, 2] *= 2
    back2 = fp8.dequantize(w8, scale2, (32, 16), "w")
    np.testing.assert_array_equal(back2[64:, 32:], back[64:, 32:] * 2)
    np.testing.assert_array_equal(back2[:64], back[:64])
    with pytest.raises(ModelFormatError, match="scale_inv' has shape"):
        fp8.dequantize(w8, scale[:2], (32, 16), "w")


def test_rope_rows_reordered_to_rotate_half():
    order = mla.rope_half_order(8)
    np.testing.assert_array_equal(order, [0, 2, 4, 6, 1, 3, 5, 7])
    w = np.arange(2 * 12 * 3).reshape(24, 3)  # 2 heads of 12 rows, last 4 are rope channels
    got = mla.reorder_rope_rows(w, 2, 12, 4)
    np.testing.assert_array_equal(got[:8], w[:8])
    np.testing.assert_array_equal(got[8:12], w[[8, 10, 9, 11]])
    np.testing.assert_array_equal(got[20:24], w[[20, 22, 21, 23]])


def test_kv_b_split_per_head():
    h, dn, dv, c = 3, 4, 5, 6
    w = np.random.default_rng(1).standard_normal((h * (dn + dv), c))
    uk_t, uv = mla.split_kv_b(w, h, dn, dv, "uk_t"), mla.split_kv_b(w, h, dn, dv, "uv")
    assert uk_t.shape == (h * c, dn) and uv.shape == (h * dv, c)
    for head in range(h):
        block = w[head * (dn + dv):(head + 1) * (dn + dv)]
        np.testing.assert_array_equal(uk_t[head * c:(head + 1) * c], block[:dn].T)
        np.testing.assert_array_equal(uv[head * dv:(head + 1) * dv], block[dn:])


def _copy_fixture(name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(FIXTURES / name, dst)
    return dst


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes,error,match", [
    (dict(topk_method="group_limited_greedy"), UnsupportedModelError, "router"),
    (dict(scoring_func="softmax"), UnsupportedModelError, "router"),
    (dict(moe_layer_freq=2), UnsupportedModelError, "moe_layer_freq"),
    (dict(kv_lora_rank=None), ModelFormatError, "kv_lora_rank"),
    (dict(num_experts_per_tok=7), ValueError, "kept groups"),
    (dict(kv_lora_rank=35), ModelFormatError, "kv_a_proj_with_mqa"),
])
def test_bad_deepseek_configs(tmp_path, changes, error, match):
    folder = _copy_fixture("deepseek_v3_f32", tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(error, match=match):
        r1lite.load(folder)


def _rewrite_safetensors(path, edit):
    """Rewrite a safetensors file through r1lite's reader (numpy's safetensors cannot hold F8):
    edit({name: [dtype, array]}) changes the entries in place."""
    from r1lite.formats.safetensors import SafetensorsFile

    f = SafetensorsFile(path)
    entries = {name: [f.dtype(name), np.array(f.array(name))] for name in f.keys()}
    del f
    edit(entries)
    write_safetensors(path, entries)


Q_A = "model.layers.0.self_attn.q_a_proj.weight"


@pytest.mark.parametrize("edit,match", [
    (lambda e: e.pop(Q_A + "_scale_inv"), "has no '.*q_a_proj.weight_scale_inv'"),
    (lambda e: e[Q_A + "_scale_inv"].__setitem__(1, e[Q_A + "_scale_inv"][1][:1]), "scale_inv' has shape"),
    (lambda e: e.__setitem__(Q_A + "_scale_inv", ["BF16", e[Q_A + "_scale_inv"][1].view(np.uint16)]),
     "must be F32"),
    (lambda e: e[Q_A].__setitem__(1, e[Q_A][1][:, :5]), "has shape"),
])
def test_fp8_checkpoint_errors(tmp_path, edit, match):
    folder = _copy_fixture("deepseek_v3_fp8", tmp_path)
    _rewrite_safetensors(folder / "model.safetensors", edit)
    with pytest.raises(ModelFormatError, match=match):
        r1lite.load(folder)


def test_fp8_fixture_is_stored_as_fp8():
    from r1lite.formats.safetensors import SafetensorsFile

    f = SafetensorsFile(FIXTURES / "deepseek_v3_fp8" / "model.safetensors")
    assert f.dtype(Q_A) == "F8_E4M3" and f.dtype(Q_A + "_scale_inv") == "F32"
    assert f.dtype("model.layers.1.mlp.experts.0.down_proj.weight") == "F8_E4M3"
    assert f.dtype("model.layers.1.mlp.gate.weight") == "F32"  # the router stays unquantized


def test_an_incomplete_mtp_layer_is_skipped_with_a_note(tmp_path):
    from safetensors.numpy import save_file

    folder = _copy_fixture("deepseek_v3_f32", tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    layers = cfg["num_hidden_layers"]
    save_file({f"model.layers.{layers}.eh_proj.weight": np.zeros((4, 8), np.float32)},
              folder / "mtp.safetensors")
    index = {"metadata": {}, "weight_map": {f"model.layers.{layers}.eh_proj.weight": "mtp.safetensors"}}
    from safetensors import safe_open
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        index["weight_map"].update({k: "model.safetensors" for k in f.keys()})
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.warns(UserWarning, match=f"skipping layer {layers} .*incomplete.*enorm.weight' is missing"):
        model = r1lite.load(folder, kv_cache="f32")
    assert model.config["mtp_layers"] == 0
    oracle = np.load(folder / "oracle.npz")
    assert rel_err(model.logits(oracle["tokens"]), oracle["logits"]) <= 1e-4
