"""GGUF files as llama.cpp's converter writes them, from r1lite-named tensors, for benchmarks, tests
and fuzz seeds: qwen2 for dense models, deepseek2 for MLA models (DeepseekV2Model in llama.cpp's
convert_hf_to_gguf.py: MLA as MQA metadata, kv_b split into attn_k_b (transposed) and attn_v_b,
routed experts stacked [E, out, in], interleaved rope rows, yarn_log_multiplier).

Tensors map r1lite names to arrays of values, or to (block bytes [.., rows, row bytes], r1lite
block format). The tokenizer is R1-Distill-Qwen's; a vocabulary smaller than its 151k tokens
keeps its first ids and moves the begin/end-of-sentence tokens to the last two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from repo_path import ROOT  # noqa: E402  (r1lite from this checkout when built in place)

from r1lite.formats import mla  # noqa: E402
from r1lite.formats.names import gguf_name  # noqa: E402

ASSETS = ROOT / "tests" / "assets" / "deepseek-r1-distill-qwen"
BOS, EOS = 151646, 151643  # R1-Distill-Qwen's <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>


def add_model_header(w, cfg: dict) -> None:
    """The GGUF metadata of a dense model's shape (a gguf.GGUFWriter, r1lite's config)."""
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_heads"])
    w.add_head_count_kv(cfg["num_kv_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["norm_eps"])


def add_tokenizer(w, vocab_size: int) -> None:
    """R1-Distill-Qwen's byte-level BPE cut to vocab_size ids (merges whose result is cut dropped)."""
    import gguf

    tok = json.loads((ASSETS / "tokenizer.json").read_text())
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    special = {t["id"]: t["special"] for t in tok["added_tokens"]}
    by_id.update({t["id"]: t["content"] for t in tok["added_tokens"]})
    bos, eos = BOS, EOS
    if vocab_size <= BOS:
        bos, eos = vocab_size - 2, vocab_size - 1
        by_id[bos], by_id[eos] = by_id[BOS], by_id[EOS]
        special[bos] = special[eos] = True
    tokens, types = [], []
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if special.get(i) else
                         gguf.TokenType.USER_DEFINED if i in special else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    kept = set(tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    merges = [m for m in merges if m.replace(" ", "") in kept]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("deepseek-r1-qwen")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)


def add_deepseek2_header(w, raw: dict, cfg: dict) -> None:
    """deepseek2 metadata of an MLA model: raw is its Hugging Face config, cfg r1lite's."""
    import gguf

    c, dn, dr, dv = cfg["kv_lora_rank"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_heads"])
    w.add_head_count_kv(1)
    w.add_rope_freq_base(rope.get("rope_theta", raw.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(cfg["norm_eps"])
    w.add_expert_used_count(cfg["experts_per_token"])
    w.add_leading_dense_block_count(cfg["moe_first_layer"])
    w.add_vocab_size(cfg["vocab_size"])
    # 0 without a q_lora (the converter writes nothing then, and llama.cpp loads such files only
    # at V2-Lite's 26-27 layers; with the key it takes attn_q for any layer count)
    w.add_q_lora_rank(cfg["q_lora_rank"] or 0)
    w.add_kv_lora_rank(c)
    w.add_key_length(c + dr)
    w.add_value_length(c)
    w.add_key_length_mla(dn + dr)
    w.add_value_length_mla(dv)
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_shared_count(cfg["num_shared_experts"])
    w.add_expert_weights_scale(raw.get("routed_scaling_factor", 1.0))
    w.add_expert_weights_norm(bool(raw.get("norm_topk_prob", False)))
    sigmoid = raw["model_type"] == "deepseek_v3"
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if sigmoid else gguf.ExpertGatingFuncType.SOFTMAX)
    if cfg["expert_groups"] > 1:
        w.add_expert_group_count(cfg["expert_groups"])
        w.add_expert_group_used_count(cfg["expert_groups_kept"])
    w.add_rope_dimension_count(dr)
    if rope.get("rope_type", rope.get("type")) == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])


def interleave_rope_rows(w, heads: int, head_rows: int, dr: int):
    """The inverse of mla.reorder_rope_rows: rotate-half rope rows back to interleaved pairs (rows
    move whole, so `w` may be values or rows of blocks)."""
    order = np.arange(head_rows)
    order[head_rows - dr:] = head_rows - dr + np.argsort(mla.rope_half_order(dr))
    rows = (np.arange(heads)[:, None] * head_rows + order[None, :]).reshape(-1)
    return np.ascontiguousarray(w[rows])


def _deepseek2_tensors(cfg: dict, tensors: dict):
    """(GGUF name, array or (blocks, format)) in deepseek2's layout, routed experts stacked."""
    h, c = cfg["num_heads"], cfg["kv_lora_rank"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]

    def apply(value, fn):
        return (fn(value[0]), value[1]) if isinstance(value, tuple) else fn(value)

    stacks: dict = {}
    for name, value in tensors.items():
        short = name.split(".", 2)[-1] if name.startswith("layers.") else name
        layer = name.split(".")[1] if name.startswith("layers.") else None
        if short.startswith("experts."):
            _, e, what = short.split(".")
            stacks.setdefault((layer, what), {})[int(e)] = value
        elif short == "w_uk_t":
            yield f"blk.{layer}.attn_k_b.weight", apply(value, lambda a: a.reshape(h, c, -1))
        elif short == "w_uv":
            yield f"blk.{layer}.attn_v_b.weight", apply(value, lambda a: a.reshape(h, dv, -1))
        elif short in ("wq", "wq_b"):  # HF's (and llama.cpp's) interleaved rope rows
            yield gguf_name(name), apply(value, lambda a: interleave_rope_rows(a, h, dn + dr, dr))
        elif short == "wkv_a":
            yield gguf_name(name), apply(value, lambda a: interleave_rope_rows(a, 1, c + dr, dr))
        else:
            yield gguf_name(name), value
    for (layer, what), by_expert in stacks.items():
        parts = [by_expert[e] for e in range(len(by_expert))]
        name = f"blk.{layer}.ffn_{what[2:]}_exps.weight"
        if isinstance(parts[0], tuple):
            yield name, (np.stack([p[0] for p in parts]), parts[0][1])
        else:
            yield name, np.stack(parts)


def write_gguf(path: Path, cfg: dict, tensors: dict, raw: dict | None = None, tokenizer: bool = True) -> Path:
    """A GGUF of `cfg`'s shape: deepseek2 for MLA models (raw, the Hugging Face config, needed),
    qwen2 otherwise; with the R1-Distill tokenizer unless tokenizer=False."""
    import gguf

    from r1lite.quant import TABLE

    deepseek = cfg.get("attention") == "mla"
    if deepseek and raw is None:
        raise ValueError(f"{path}: a deepseek2 file needs the model's Hugging Face config (raw=) for "
                         "its router and rope metadata")
    w = gguf.GGUFWriter(str(path), "deepseek2" if deepseek else "qwen2")
    w.add_name("r1lite bench model")
    if deepseek:
        add_deepseek2_header(w, raw, cfg)
        items = _deepseek2_tensors(cfg, tensors)
    else:
        add_model_header(w, cfg)
        items = ((gguf_name(name), value) for name, value in tensors.items())
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if tokenizer:
        add_tokenizer(w, cfg["vocab_size"])
    for name, value in items:
        if isinstance(value, tuple):
            blocks, fmt = value
            w.add_tensor(name, np.ascontiguousarray(blocks),
                         raw_dtype=gguf.GGMLQuantizationType[TABLE[fmt]["gguf_name"]])
        else:
            w.add_tensor(name, np.ascontiguousarray(value))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
