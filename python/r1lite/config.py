"""Normalizing a checkpoint's config into r1lite's one config (the keys the core reads).

The normalized config is a plain dict (JSON-serializable, so it can travel inside r1lite's own
model file): architecture, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, head_dim,
intermediate_size, norm_eps, qkv_bias, tied_embeddings, max_position_embeddings, context, the
rope_* fields (ARCH.md §5, §7-8), and for DeepSeek models (ARCH.md §1, §4, §6, §10) attention="mla"
with q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim, attn_scale_mult,
rope_interleaved, and the mixture-of-experts fields num_experts, num_shared_experts,
experts_per_token, moe_intermediate_size, moe_first_layer, expert_groups, expert_groups_kept,
router, router_bias, normalize_expert_weights, routed_scale.
"""

from __future__ import annotations

import math

from .errors import ModelFormatError, UnsupportedModelError

# Hugging Face architecture name -> r1lite architecture name
HF_ARCHITECTURES = {
    "Qwen2ForCausalLM": "qwen2",
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
    if cfg.get("mlp_bias"):
        raise UnsupportedModelError(f"{where}: MLP biases are not supported")
    if cfg.get("use_sliding_window") or "sliding_attention" in (cfg.get("layer_types") or []):
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
        # Qwen2 always has q/k/v biases; Llama has them when attention_bias is set.
        "qkv_bias": arch == "qwen2" or bool(cfg.get("attention_bias", False)),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_position_embeddings": max_pos,
        "context": max_pos,
    }
    out.update(_rope_settings(cfg, where))
    check_size(out, where)
    return out


def _normalize_deepseek(cfg: dict, arch: str, where: str) -> dict:
    """DeepSeek V2/V3 (R1): MLA attention, YaRN, and mixture-of-experts layers (ARCH.md §1, §10)."""
    if cfg.get("hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{where}: activation '{cfg['hidden_act']}' is not supported")
    if cfg.get("attention_bias"):
        raise UnsupportedModelError(f"{where}: attention biases are not supported for MLA")
    max_pos = int(cfg.get("max_position_embeddings") or 4096)
    out = {
        "architecture": arch,
        "vocab_size": int(_need(cfg, "vocab_size", where)),
        "hidden_size": int(_need(cfg, "hidden_size", where)),
        "num_layers": int(_need(cfg, "num_hidden_layers", where)),
        "num_heads": int(_need(cfg, "num_attention_heads", where)),
        "num_kv_heads": int(_need(cfg, "num_attention_heads", where)),  # unused by MLA
        "head_dim": int(_need(cfg, "qk_rope_head_dim", where)),  # the rotary channels
        "intermediate_size": int(cfg.get("intermediate_size") or 0),
        "norm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
        "qkv_bias": False,
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_position_embeddings": max_pos,
        "context": max_pos,
        "attention": "mla",
        "q_lora_rank": int(cfg.get("q_lora_rank") or 0),
        "kv_lora_rank": int(_need(cfg, "kv_lora_rank", where)),
        "qk_nope_head_dim": int(_need(cfg, "qk_nope_head_dim", where)),
        "qk_rope_head_dim": int(_need(cfg, "qk_rope_head_dim", where)),
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
    check_size(out, where)
    return out


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


# Sanity bounds far above any real model (R1: 61 layers, 256 experts): a config beyond them is
# corrupt, and listing its tensors would not end.
MAX_LAYERS, MAX_EXPERTS = 4096, 65536

_POSITIVE_INTS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                  "max_position_embeddings", "context")
_SCHEMA = {  # per optional part: {key: kind}; kinds: "int>0", "int>=0", "float", "bool", "str"
    "llama3": {"rope_factor": "float", "rope_low_freq_factor": "float",
               "rope_high_freq_factor": "float", "rope_original_context": "int>0"},
    "yarn": {"rope_factor": "float", "rope_original_context": "int>0", "yarn_beta_fast": "float",
             "yarn_beta_slow": "float", "rope_attn_factor": "float"},
    "mla": {"q_lora_rank": "int>=0", "kv_lora_rank": "int>0", "qk_nope_head_dim": "int>0",
            "qk_rope_head_dim": "int>0", "v_head_dim": "int>0", "rope_interleaved": "bool"},
    "moe": {"num_shared_experts": "int>=0", "experts_per_token": "int>0",
            "moe_intermediate_size": "int>0", "moe_first_layer": "int>=0", "expert_groups": "int>0",
            "expert_groups_kept": "int>0", "router": "str", "router_bias": "bool",
            "normalize_expert_weights": "bool", "routed_scale": "float"},
}


def _check_value(cfg: dict, key: str, kind: str, where: str) -> None:
    v = cfg.get(key)
    is_int = isinstance(v, int) and not isinstance(v, bool)
    ok = {"int>0": is_int and v > 0, "int>=0": is_int and v >= 0,
          "float": (is_int or isinstance(v, float)) and math.isfinite(v),
          "bool": isinstance(v, bool), "str": isinstance(v, str)}[kind]
    if not ok:
        raise ModelFormatError(f"{where}: config '{key}' must be {kind.replace('int', 'an integer ')}"
                               f", got {v!r}")


def check_normalized(cfg, where: str) -> dict:
    """A normalized config read back from a file, checked key by key (ModelFormatError)."""
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{where}: the config is not a JSON object")
    for key in _POSITIVE_INTS:
        _check_value(cfg, key, "int>0", where)
    _check_value(cfg, "intermediate_size", "int>=0", where)
    for key in ("norm_eps", "rope_theta"):
        _check_value(cfg, key, "float", where)
    for key in ("qkv_bias", "tied_embeddings"):
        _check_value(cfg, key, "bool", where)
    _check_value(cfg, "architecture", "str", where)
    if cfg.get("rope_kind") not in ROPE_KINDS:
        raise ModelFormatError(f"{where}: config 'rope_kind' must be one of {', '.join(ROPE_KINDS)}")
    parts = [cfg["rope_kind"]] if cfg["rope_kind"] in _SCHEMA else []
    if cfg.get("attention", "gqa") not in ("gqa", "mla"):
        raise ModelFormatError(f"{where}: config 'attention' must be gqa or mla")
    if cfg.get("attention") == "mla":
        parts.append("mla")
    if "num_experts" in cfg:
        _check_value(cfg, "num_experts", "int>=0", where)
        if cfg["num_experts"]:
            parts.append("moe")
    for part in parts:
        for key, kind in _SCHEMA[part].items():
            _check_value(cfg, key, kind, where)
    if "attn_scale_mult" in cfg:
        _check_value(cfg, "attn_scale_mult", "float", where)
    factors = cfg.get("rope_freq_factors")
    if factors is not None and not (
            isinstance(factors, list)
            and all(isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f) and f > 0
                    for f in factors)):
        raise ModelFormatError(f"{where}: config 'rope_freq_factors' must be a list of positive numbers")
    check_size(cfg, where)
    return cfg


def check_size(cfg: dict, where: str) -> None:
    if cfg["num_layers"] > MAX_LAYERS or cfg.get("num_experts", 0) > MAX_EXPERTS:
        raise ModelFormatError(f"{where}: {cfg['num_layers']} layers / {cfg.get('num_experts', 0)} "
                               f"experts is beyond any real model (corrupt config?)")


def with_context(config: dict, context: int | None) -> dict:
    """The config with the KV cache limit set (default: the model's max_position_embeddings).
    The cache grows in pages as it is used, so a large limit costs no memory up front."""
    out = dict(config)
    if context is not None:
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise ValueError(f"context must be a positive integer, got {context!r}")
        out["context"] = context
    return out
