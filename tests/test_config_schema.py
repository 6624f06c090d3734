"""The config is described once (csrc/model/config.h): the normalized config holds exactly the
core's fields, the core rejects unknown keys, wrong types and inconsistent values, and the tensor
list comes from the core too."""

import pytest

from r1lite import ModelFormatError
from r1lite.config import CONFIG_FIELDS, check_normalized, normalize_hf_config
from r1lite.formats.tensors import expected_tensors

QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "vocab_size": 64, "hidden_size": 16,
         "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
         "intermediate_size": 24, "max_position_embeddings": 128}
V3 = {"architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 64, "hidden_size": 16,
      "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 24,
      "max_position_embeddings": 128, "kv_lora_rank": 8, "qk_nope_head_dim": 4,
      "qk_rope_head_dim": 2, "v_head_dim": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
      "moe_intermediate_size": 6, "first_k_dense_replace": 1, "n_group": 2, "topk_group": 1}


def test_normalized_config_has_exactly_the_core_fields():
    names = [f[0] for f in CONFIG_FIELDS]
    assert len(names) == len(set(names))
    for raw in (QWEN2, V3):
        assert list(normalize_hf_config(raw, "x")) == names
    assert all(isinstance(f[3], str) and f[3] for f in CONFIG_FIELDS)  # every field says what it holds


def test_mla_head_dim_is_the_query_key_width():
    cfg = normalize_hf_config(V3, "x")
    assert cfg["head_dim"] == 4 + 2 and cfg["num_kv_heads"] == cfg["num_heads"]
    old = dict(cfg, head_dim=2)  # files written when head_dim held the rope channels
    assert check_normalized(old, "old")["head_dim"] == 6
    with pytest.raises(ModelFormatError, match="head_dim must be qk_nope_head_dim"):
        check_normalized(dict(cfg, head_dim=5), "bad")


@pytest.mark.parametrize("change, message", [
    ({"hidden_sizes": 16}, "unknown key 'hidden_sizes'"),
    ({"num_layers": "2"}, "'num_layers' must be an integer"),
    ({"num_layers": True}, "'num_layers' must be an integer"),
    ({"num_layers": 2 ** 70}, "'num_layers' must be a non-negative 64-bit integer"),
    ({"norm_eps": float("nan")}, "'norm_eps' must be a finite number"),
    ({"qkv_bias": 1}, "'qkv_bias' must be true or false"),
    ({"rope_kind": "ntk"}, "'rope_kind' must be one of default llama3 yarn"),
    ({"rope_freq_factors": [1.0, "x"]}, "'rope_freq_factors' must be a number"),
    ({"num_kv_heads": 3}, "num_kv_heads must be > 0 and divide num_heads"),
    ({"num_layers": 5000}, "num_layers must be in"),
])
def test_bad_fields_are_named(change, message):
    cfg = normalize_hf_config(QWEN2, "x")
    with pytest.raises(ModelFormatError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check_normalized(dict(cfg, **change), "file")


def test_experts_need_a_layer_that_uses_them():
    cfg = normalize_hf_config(V3, "x")
    with pytest.raises(ModelFormatError, match="moe_first_layer must be in"):
        check_normalized(dict(cfg, moe_first_layer=2), "file")


def test_tensor_list_comes_from_the_core():
    dense = expected_tensors(normalize_hf_config(QWEN2, "x"))
    assert dense["layers.1.wk"] == ((8, 16), "matrix") and dense["layers.0.bq"] == ((16,), "f32")
    assert "lm_head" in dense and "layers.0.q_norm" not in dense
    qwen3 = expected_tensors(normalize_hf_config(dict(QWEN2, architectures=["Qwen3ForCausalLM"],
                                                      head_dim=12, tie_word_embeddings=True), "x"))
    assert qwen3["layers.0.q_norm"] == ((12,), "f32") and qwen3["layers.0.wq"] == ((24, 16), "matrix")
    assert "layers.0.bq" not in qwen3 and "lm_head" not in qwen3
    moe = expected_tensors(normalize_hf_config(V3, "x"))
    assert "layers.0.w_gate" in moe and "layers.1.experts.3.w_down" in moe
    assert moe["layers.1.router"] == ((4, 16), "f32") and "layers.1.experts.4.w_up" not in moe


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Qwen3ForCausalLM"])
def test_attention_bias_with_an_output_bias_is_refused(arch):
    from r1lite import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="attention_bias"):
        normalize_hf_config(dict(QWEN2, architectures=[arch], attention_bias=True), "x")
