"""A GGUF file's metadata as r1lite's config: llama / qwen2 / qwen3 directly, deepseek2 through the
Hugging Face config it came from."""

from __future__ import annotations

import numpy as np

from ..config import normalize_hf_config
from ..errors import ModelFormatError, UnsupportedModelError
from .gguf_reader import GGUFFile

ARCHITECTURES = ("llama", "qwen2", "qwen3", "deepseek2")


def gguf_config(g: GGUFFile) -> dict:
    """r1lite's config from a GGUF file's metadata (before check_normalized)."""
    arch = g.need("general.architecture")
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{g.path}: GGUF architecture '{arch}' is not supported (supported: {', '.join(ARCHITECTURES)})")
    if arch == "deepseek2":
        return normalize_hf_config(_deepseek2_as_hf(g), str(g.path))
    heads = int(g.need(f"{arch}.attention.head_count"))
    hidden = int(g.need(f"{arch}.embedding_length"))
    tokens = g.get("tokenizer.ggml.tokens") or []
    vocab = int(g.get(f"{arch}.vocab_size") or len(tokens) or g.tensors["token_embd.weight"].shape[1])
    scaling = g.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise UnsupportedModelError(f"{g.path}: rope scaling '{scaling}' is not supported")
    ctx = int(g.get(f"{arch}.context_length") or 4096)
    head_dim = int(g.get(f"{arch}.attention.key_length") or hidden // heads)
    extra = {}
    if "rope_freqs.weight" in g.tensors:
        # llama.cpp's converter stores llama3 rope scaling as one divisor per frequency
        # (ARCH.md §8 in that form); the core divides its inverse frequencies by them.
        factors = g.f32("rope_freqs.weight").reshape(-1)
        if factors.size != head_dim // 2 or not np.all(np.isfinite(factors) & (factors > 0)):
            raise ModelFormatError(f"{g.path}: tensor 'rope_freqs.weight' must hold {head_dim // 2} "
                                   f"positive factors, got {factors.size} values")
        extra["rope_freq_factors"] = [float(f) for f in factors]
    return {
        "architecture": arch,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_layers": int(g.need(f"{arch}.block_count")),
        "num_heads": heads,
        "num_kv_heads": int(g.get(f"{arch}.attention.head_count_kv") or heads),
        "head_dim": head_dim,
        "intermediate_size": int(g.need(f"{arch}.feed_forward_length")),
        "norm_eps": float(g.get(f"{arch}.attention.layer_norm_rms_epsilon") or 1e-6),
        "qkv_bias": "blk.0.attn_q.bias" in g.tensors,
        "qk_norm": "blk.0.attn_q_norm.weight" in g.tensors,  # Qwen3 (ARCH.md §11)
        "tied_embeddings": "output.weight" not in g.tensors,
        "max_position_embeddings": ctx,
        "context": ctx,
        "rope_kind": "default",
        "rope_theta": float(g.get(f"{arch}.rope.freq_base") or 10000.0),
        **extra,
    }


# llama.cpp's expert_gating_func values
GATING_SOFTMAX, GATING_SIGMOID = 1, 2


def _deepseek2_as_hf(g: GGUFFile) -> dict:
    """The Hugging Face config that llama.cpp's converter turned into this deepseek2 metadata, so
    that one normalization (config.py) serves both. The converter writes MLA as MQA: key_length is
    kv_lora_rank + rope dims, the per-head sizes are in key_length_mla / value_length_mla (older
    files: key_length / value_length themselves). YaRN keeps only yarn_log_multiplier
    (0.1·mscale_all_dim): llama.cpp takes mscale = mscale_all_dim, as every DeepSeek release has."""
    a = "deepseek2"
    dr = int(g.need(f"{a}.rope.dimension_count"))
    key_mla = g.get(f"{a}.attention.key_length_mla") or g.need(f"{a}.attention.key_length")
    value_mla = g.get(f"{a}.attention.value_length_mla") or g.need(f"{a}.attention.value_length")
    heads = int(g.need(f"{a}.attention.head_count"))
    tokens = g.get("tokenizer.ggml.tokens") or []
    sigmoid = int(g.get(f"{a}.expert_gating_func") or GATING_SOFTMAX) == GATING_SIGMOID
    groups = int(g.get(f"{a}.expert_group_count") or 1)
    cfg = {
        "architectures": ["DeepseekV3ForCausalLM" if sigmoid else "DeepseekV2ForCausalLM"],
        "vocab_size": int(g.get(f"{a}.vocab_size") or len(tokens) or g.tensors["token_embd.weight"].shape[1]),
        "hidden_size": int(g.need(f"{a}.embedding_length")),
        "num_hidden_layers": int(g.need(f"{a}.block_count")),
        "num_attention_heads": heads,
        "intermediate_size": int(g.get(f"{a}.feed_forward_length") or 0),
        "rms_norm_eps": float(g.get(f"{a}.attention.layer_norm_rms_epsilon") or 1e-6),
        "max_position_embeddings": int(g.get(f"{a}.context_length") or 4096),
        "tie_word_embeddings": "output.weight" not in g.tensors,
        "rope_theta": float(g.get(f"{a}.rope.freq_base") or 10000.0),
        "q_lora_rank": int(g.get(f"{a}.attention.q_lora_rank") or 0) or None,
        "kv_lora_rank": int(g.need(f"{a}.attention.kv_lora_rank")),
        "qk_rope_head_dim": dr,
        "qk_nope_head_dim": int(key_mla) - dr,
        "v_head_dim": int(value_mla),
        "rope_interleave": True,  # llama.cpp's deepseek2 rope pairs adjacent channels
        "n_routed_experts": int(g.get(f"{a}.expert_count") or 0),
        "n_shared_experts": int(g.get(f"{a}.expert_shared_count") or 0),
        "num_experts_per_tok": int(g.get(f"{a}.expert_used_count") or 0),
        "moe_intermediate_size": int(g.get(f"{a}.expert_feed_forward_length") or 0),
        "first_k_dense_replace": int(g.get(f"{a}.leading_dense_block_count") or 0),
        "n_group": groups,
        "topk_group": int(g.get(f"{a}.expert_group_used_count") or 1),
        "routed_scaling_factor": float(g.get(f"{a}.expert_weights_scale") or 1.0),
        "norm_topk_prob": bool(g.get(f"{a}.expert_weights_norm") or False),
        "scoring_func": "sigmoid" if sigmoid else "softmax",
        "topk_method": "noaux_tc" if sigmoid else ("group_limited_greedy" if groups > 1 else "greedy"),
    }
    scaling = g.get(f"{a}.rope.scaling.type")
    if scaling == "yarn":
        mscale = float(g.get(f"{a}.rope.scaling.yarn_log_multiplier") or 0.0) / 0.1
        cfg["rope_scaling"] = {
            "type": "yarn", "factor": float(g.need(f"{a}.rope.scaling.factor")),
            "original_max_position_embeddings": int(g.need(f"{a}.rope.scaling.original_context_length")),
            "beta_fast": float(g.get(f"{a}.rope.scaling.yarn_beta_fast") or 32.0),
            "beta_slow": float(g.get(f"{a}.rope.scaling.yarn_beta_slow") or 1.0),
            "mscale": mscale, "mscale_all_dim": mscale}
    elif scaling not in (None, "none"):
        raise UnsupportedModelError(f"{g.path}: rope scaling '{scaling}' is not supported")
    return cfg
