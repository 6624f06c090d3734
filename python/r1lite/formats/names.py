"""Every checkpoint tensor name r1lite knows, mapped onto r1lite's own names (csrc/model/weights.h).
One table per scope: r1lite name -> (Hugging Face name, GGUF / llama.cpp name)."""

# inside a layer: model.layers.{i}.<hf> and blk.{i}.<gguf>
LAYER_NAMES = {
    "attn_norm": ("input_layernorm.weight", "attn_norm.weight"),
    "wq": ("self_attn.q_proj.weight", "attn_q.weight"),
    "wk": ("self_attn.k_proj.weight", "attn_k.weight"),
    "wv": ("self_attn.v_proj.weight", "attn_v.weight"),
    "bq": ("self_attn.q_proj.bias", "attn_q.bias"),
    "bk": ("self_attn.k_proj.bias", "attn_k.bias"),
    "bv": ("self_attn.v_proj.bias", "attn_v.bias"),
    "q_norm": ("self_attn.q_norm.weight", "attn_q_norm.weight"),  # Qwen3 (ARCH.md §11)
    "k_norm": ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    "wo": ("self_attn.o_proj.weight", "attn_output.weight"),
    "ffn_norm": ("post_attention_layernorm.weight", "ffn_norm.weight"),
    "w_gate": ("mlp.gate_proj.weight", "ffn_gate.weight"),
    "w_up": ("mlp.up_proj.weight", "ffn_up.weight"),
    "w_down": ("mlp.down_proj.weight", "ffn_down.weight"),
    # MLA (ARCH.md §2); w_uk_t and w_uv are both cut from kv_b (formats/mla.py)
    "wq_a": ("self_attn.q_a_proj.weight", "attn_q_a.weight"),
    "q_a_norm": ("self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"),
    "wq_b": ("self_attn.q_b_proj.weight", "attn_q_b.weight"),
    "wkv_a": ("self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"),
    "kv_a_norm": ("self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"),
    "w_uk_t": ("self_attn.kv_b_proj.weight", "attn_kv_b.weight"),
    "w_uv": ("self_attn.kv_b_proj.weight", "attn_kv_b.weight"),
    # mixture of experts
    "router": ("mlp.gate.weight", "ffn_gate_inp.weight"),
    "router_bias": ("mlp.gate.e_score_correction_bias", "exp_probs_b.bias"),
    "shared.w_gate": ("mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"),
    "shared.w_up": ("mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"),
    "shared.w_down": ("mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"),
}

# one routed expert: model.layers.{i}.mlp.experts.{e}.<hf>
EXPERT_NAMES = {
    "w_gate": "gate_proj.weight",
    "w_up": "up_proj.weight",
    "w_down": "down_proj.weight",
}

# DeepSeek's MTP module d (ARCH.md §12) is checkpoint layer num_hidden_layers + d: its own tensors
# by these names, its decoder block under a layer's names (LAYER_NAMES, EXPERT_NAMES). Its
# embed_tokens and shared_head.head copy the main model's and are not read.
MTP_NAMES = {
    "enorm": "enorm.weight",
    "hnorm": "hnorm.weight",
    "eh_proj": "eh_proj.weight",
    "head_norm": "shared_head.norm.weight",
}

GLOBAL_NAMES = {
    "tok_embd": ("model.embed_tokens.weight", "token_embd.weight"),
    "out_norm": ("model.norm.weight", "output_norm.weight"),
    "lm_head": ("lm_head.weight", "output.weight"),
}

HF, GGUF = 0, 1
LAYER_PREFIX = {HF: "model.layers.{}.", GGUF: "blk.{}."}


def _name(name: str, scheme: int) -> str:
    if name.startswith("layers."):
        _, idx, short = name.split(".", 2)
        if short.startswith("experts."):
            if scheme != HF:
                raise KeyError(f"{name}: routed experts have no per-expert GGUF name")
            _, expert, what = short.split(".", 2)
            return LAYER_PREFIX[HF].format(idx) + f"mlp.experts.{expert}." + EXPERT_NAMES[what]
        return LAYER_PREFIX[scheme].format(idx) + LAYER_NAMES[short][scheme]
    return GLOBAL_NAMES[name][scheme]


def hf_name(name: str, num_layers: int = 0) -> str:
    """The Hugging Face name of an r1lite tensor name (an MTP module's need the main model's
    num_layers)."""
    if name.startswith("mtp."):
        _, d, short = name.split(".", 2)
        layer = num_layers + int(d)
        if short in MTP_NAMES:
            return LAYER_PREFIX[HF].format(layer) + MTP_NAMES[short]
        return _name(f"layers.{layer}.{short}", HF)
    return _name(name, HF)


def gguf_name(name: str) -> str:
    """The GGUF (llama.cpp) name of an r1lite tensor name."""
    return _name(name, GGUF)
