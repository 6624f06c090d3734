"""Normalizing a checkpoint's config into r1lite's one config.

The config's fields are defined once, in the core (csrc/model/config.h; `CONFIG_FIELDS` lists
them with their types, defaults and meanings). Here a Hugging Face config.json is mapped onto
them; `normalized()` fills the remaining fields with their defaults and has the core check the
whole. The result is a plain dict (JSON-serializable, so it travels inside r1lite's own model
file) with every field.
"""

from __future__ import annotations

import math

from . import _core
from .errors import ModelFormatError, UnsupportedModelError

# (name, type, default, meaning) of every config field, in the core's order
CONFIG_FIELDS = tuple(tuple(f) for f in _core.config_fields())

# Hugging Face architecture name -> r1lite architecture name
HF_ARCHITECTURES = {
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "LlamaForCausalLM": "llama",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV2ForCausalLM": "deepseek_v2",
}

ROPE_KINDS = ("default", "llama3", "yarn")


def _need(cfg: dict, key: str, where: str):
    if key not in cfg or cfg[key] is None:
        raise ModelFormatError(f"{where}: config lacks '{key}'")
    return cfg[key]


def _rope_params(cfg: dict) -> dict:
    """RoPE parameters from either config style: top-level rope_theta + rope_scaling (published
    checkpoints) or transformers 5's rope_parameters dict."""
    params = dict(cfg.get("rope_scaling") or {})
    params.update(cfg.get("rope_parameters") or {})
    return params


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's magnitude correction (ARCH.md §5 get_mscale)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _rope_settings(cfg: dict, where: str) -> dict:
    params = _rope_params(cfg)
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    if kind not in ROPE_KINDS:
        raise UnsupportedModelError(
            f"{where}: rope type '{kind}' is not supported (supported: {', '.join(ROPE_KINDS)})")
    out = {"rope_kind": kind, "rope_theta": float(theta)}
    if kind == "llama3":
        out.update(
            rope_factor=float(_need(params, "factor", where + " rope")),
            rope_low_freq_factor=float(_need(params, "low_freq_factor", where + " rope")),
            rope_high_freq_factor=float(_need(params, "high_freq_factor", where + " rope")),
            rope_original_context=int(
                _need(params, "original_max_position_embeddings", where + " rope")),
        )
    if kind == "yarn":
        # ARCH.md §5, as transformers computes it: the factor defaults to the context ratio; cos
        # and sin are scaled by attention_factor (or mscale / mscale_all_dim).
        original = int(_need(params, "original_max_position_embeddings", where + " rope"))
        factor = params.get("factor") or int(_need(cfg, "max_position_embeddings", where)) / original
        if params.get("truncate") is False:
            raise UnsupportedModelError(f"{where}: yarn rope with truncate=false is not supported")
        attn_factor = params.get("attention_factor")
        if attn_factor is None:
            mscale, mscale_all = params.get("mscale"), params.get("mscale_all_dim")
            attn_factor = (yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
                           if mscale and mscale_all else yarn_mscale(factor))
        out.update(rope_factor=float(factor), rope_original_context=original,
                   yarn_beta_fast=float(params.get("beta_fast") or 32),
                   yarn_beta_slow=float(params.get("beta_slow") or 1),
                   rope_attn_factor=float(attn_factor))
    return out


def normalize_hf_config(cfg: dict, where: str) -> dict:
    """r1lite's config from a Hugging Face config.json (`where` names it in errors)."""
    archs = cfg.get("architectures") or []
    arch_name = archs[0] if archs else cfg.get("model_type", "<none>")
    if arch_name not in HF_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{where}: architecture '{arch_name}' is not supported "
            f"(supported: {', '.join(HF_ARCHITECTURES)})")
    arch = HF_ARCHITECTURES[arch_name]
    if arch.startswith("deepseek"):
        return _normalize_deepseek(cfg, arch, where)
    hidden = int(_need(cfg, "hidden_size", where))
    heads = int(_need(cfg, "num_attention_heads", where))
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    if cfg.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{where}: activation '{cfg['hidden_act']}' is not supported")
    if cfg.get("attention_bias") and arch != "qwen2":
        # Llama and Qwen3 then put a bias on o_proj too, which r1lite does not have; no
        # published checkpoint of theirs sets it.
        raise UnsupportedModelError(f"{where}: attention_bias (biases on q/k/v/o) is not supported for {arch}")
    if cfg.get("mlp_bias"):
        raise UnsupportedModelError(f"{where}: MLP biases are not supported")
    if cfg.get("use_sliding_window") or "sliding_attention" in (cfg.get("layer_types") or []):
        # (Qwen2/Qwen3 configs carry sliding_window but only use it with use_sliding_window)
        raise UnsupportedModelError(f"{where}: sliding-window attention is not supported")
    max_pos = int(cfg.get("max_position_embeddings") or 4096)
    out = {
        "architecture": arch,
        "vocab_size": int(_need(cfg, "vocab_size", where)),
        "hidden_size": hidden,
        "num_layers": int(_need(cfg, "num_hidden_layers", where)),
        "num_heads": heads,
        "num_kv_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": int(_need(cfg, "intermediate_size", where)),
        "norm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "qkv_bias": arch == "qwen2",  # Qwen2 always has q/k/v biases (and none on o)
        "qk_norm": arch == "qwen3",  # per-head RMSNorm of q and k (ARCH.md §11)
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_position_embeddings": max_pos,
        "context": max_pos,
    }
    out.update(_rope_settings(cfg, where))
    return normalized(out, where)


def _normalize_deepseek(cfg: dict, arch: str, where: str) -> dict:
    """DeepSeek V2/V3 (R1): MLA attention, YaRN, and mixture-of-experts layers (ARCH.md §1, §10)."""
    if cfg.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{where}: activation '{cfg['hidden_act']}' is not supported")
    if cfg.get("attention_bias"):
        raise UnsupportedModelError(f"{where}: attention biases are not supported for MLA")
    max_pos = int(cfg.get("max_position_embeddings") or 4096)
    nope, rope = int(_need(cfg, "qk_nope_head_dim", where)), int(_need(cfg, "qk_rope_head_dim", where))
    out = {
        "architecture": arch,
        "vocab_size": int(_need(cfg, "vocab_size", where)),
        "hidden_size": int(_need(cfg, "hidden_size", where)),
        "num_layers": int(_need(cfg, "num_hidden_layers", where)),
        "num_heads": int(_need(cfg, "num_attention_heads", where)),
        "num_kv_heads": int(_need(cfg, "num_attention_heads", where)),  # every head its own key
        "head_dim": nope + rope,  # query/key channels per head
        "intermediate_size": int(cfg.get("intermediate_size") or 0),
        "norm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "qkv_bias": False,
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_position_embeddings": max_pos,
        "context": max_pos,
        "attention": "mla",
        "q_lora_rank": int(cfg.get("q_lora_rank") or 0),
        "kv_lora_rank": int(_need(cfg, "kv_lora_rank", where)),
        "qk_nope_head_dim": nope,
        "qk_rope_head_dim": rope,
        "v_head_dim": int(_need(cfg, "v_head_dim", where)),
        # The checkpoint's rope channels are interleaved pairs (V2 always; V3 unless
        # rope_interleave is false); the importer reorders them for the rotate-half kernel.
        "rope_interleaved": arch == "deepseek_v2" or cfg.get("rope_interleave", True) is not False,
    }
    out.update(_rope_settings(cfg, where))
    # Softmax scale multiplier mscale² (ARCH.md §4 step 5; transformers applies it for any rope
    # scaling that has mscale_all_dim, with the config's factor).
    params = _rope_params(cfg)
    mult = 1.0
    if out["rope_kind"] != "default" and params.get("mscale_all_dim"):
        mult = yarn_mscale(float(params["factor"]), float(params["mscale_all_dim"])) ** 2
    out["attn_scale_mult"] = mult
    out.update(_deepseek_moe(cfg, arch, where))
    if out["num_experts"] == 0 or out["moe_first_layer"] > 0:
        _need(cfg, "intermediate_size", where)
    return normalized(out, where)


def _deepseek_moe(cfg: dict, arch: str, where: str) -> dict:
    experts = int(cfg.get("n_routed_experts") or 0)
    if experts == 0:
        return {"num_experts": 0}
    if int(cfg.get("moe_layer_freq") or 1) != 1:
        raise UnsupportedModelError(f"{where}: moe_layer_freq other than 1 is not supported")
    k = int(_need(cfg, "num_experts_per_tok", where))
    norm = bool(cfg.get("norm_topk_prob", arch == "deepseek_v3"))
    scale = float(cfg.get("routed_scaling_factor") or 1.0)
    if arch == "deepseek_v3":
        method = cfg.get("topk_method", "noaux_tc")
        if method != "noaux_tc" or cfg.get("scoring_func", "sigmoid") != "sigmoid":
            raise UnsupportedModelError(
                f"{where}: DeepSeek-V3 router {method}/{cfg.get('scoring_func')} is not supported "
                "(noaux_tc with sigmoid scores)")
        router, bias = "sigmoid_group_top2", True
    else:
        method = cfg.get("topk_method") or "greedy"
        routers = {"greedy": "softmax_greedy", "group_limited_greedy": "softmax_group_max"}
        if method not in routers or cfg.get("scoring_func", "softmax") != "softmax":
            raise UnsupportedModelError(
                f"{where}: DeepSeek-V2 router {method} is not supported (greedy, group_limited_greedy)")
        router, bias = routers[method], False
        # DeepSeek's V2 code either normalizes the top-k weights or scales them, never both
        # (transformers' port ignores norm_topk_prob; every published V2 config has it false).
        norm = norm and k > 1
        if norm:
            scale = 1.0
    return {
        "num_experts": experts,
        "num_shared_experts": int(cfg.get("n_shared_experts") or 0),
        "experts_per_token": k,
        "moe_intermediate_size": int(_need(cfg, "moe_intermediate_size", where)),
        "moe_first_layer": int(cfg.get("first_k_dense_replace") or 0),
        "expert_groups": int(cfg.get("n_group") or 1),
        "expert_groups_kept": int(cfg.get("topk_group") or 1),
        "router": router,
        "router_bias": bias,
        "normalize_expert_weights": norm,
        "routed_scale": scale,
    }


def normalized(cfg: dict, where: str) -> dict:
    """The config with every field (absent ones at their defaults), checked by the core:
    ModelFormatError naming the first unknown key, wrong type or bad value."""
    try:
        return _core.normalized_config(cfg)
    except (ValueError, TypeError) as e:
        raise ModelFormatError(f"{where}: {e}") from None


def check_normalized(cfg, where: str) -> dict:
    """A normalized config read back from a file, checked field by field (ModelFormatError)."""
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{where}: the config is not a JSON object")
    if cfg.get("attention") == "mla" and isinstance(cfg.get("qk_rope_head_dim"), int) \
            and cfg.get("head_dim") == cfg["qk_rope_head_dim"] and isinstance(cfg.get("qk_nope_head_dim"), int):
        # files written before head_dim meant the query/key width for MLA too
        cfg = dict(cfg, head_dim=cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"])
    return normalized(cfg, where)


def with_context(config: dict, context: int | None) -> dict:
    """The config with the KV cache limit set (default: the model's max_position_embeddings).
    The cache grows in pages as it is used, so a large limit costs no memory up front."""
    out = dict(config)
    if context is not None:
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise ValueError(f"context must be a positive integer, got {context!r}")
        out["context"] = context
    return out
