"""Normalizing a checkpoint's config into r1lite's one config (the keys the core reads).

The normalized config is a plain dict (JSON-serializable, so it can travel inside r1lite's own
model file): architecture, vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, head_dim,
intermediate_size, norm_eps, qkv_bias, tied_embeddings, max_position_embeddings, context, and the
rope_* fields (ARCH.md §7-8).
"""

from __future__ import annotations

from .errors import ModelFormatError, UnsupportedModelError

# Hugging Face architecture name -> r1lite architecture name
HF_ARCHITECTURES = {
    "Qwen2ForCausalLM": "qwen2",
    "LlamaForCausalLM": "llama",
}

ROPE_KINDS = ("default", "llama3")


def _need(cfg: dict, key: str, where: str):
    if key not in cfg or cfg[key] is None:
        raise ModelFormatError(f"{where}: config lacks '{key}'")
    return cfg[key]


def _rope_settings(cfg: dict, where: str) -> dict:
    """RoPE from either config style: top-level rope_theta + rope_scaling (published checkpoints)
    or transformers 5's rope_parameters dict."""
    params = dict(cfg.get("rope_scaling") or {})
    params.update(cfg.get("rope_parameters") or {})
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
    return out


def with_context(config: dict, context: int | None) -> dict:
    """The config with the KV cache limit set (default: the model's max_position_embeddings).
    The cache grows in pages as it is used, so a large limit costs no memory up front."""
    out = dict(config)
    if context is not None:
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise ValueError(f"context must be a positive integer, got {context!r}")
        out["context"] = context
    return out
