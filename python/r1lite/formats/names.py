"""Every checkpoint tensor name r1lite knows, mapped onto r1lite's own names (csrc/model/model.h)."""

# r1lite layer tensor -> Hugging Face name inside model.layers.{i}.
HF_LAYER_NAMES = {
    "attn_norm": "input_layernorm.weight",
    "wq": "self_attn.q_proj.weight",
    "wk": "self_attn.k_proj.weight",
    "wv": "self_attn.v_proj.weight",
    "bq": "self_attn.q_proj.bias",
    "bk": "self_attn.k_proj.bias",
    "bv": "self_attn.v_proj.bias",
    "wo": "self_attn.o_proj.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "w_gate": "mlp.gate_proj.weight",
    "w_up": "mlp.up_proj.weight",
    "w_down": "mlp.down_proj.weight",
}

HF_GLOBAL_NAMES = {
    "tok_embd": "model.embed_tokens.weight",
    "out_norm": "model.norm.weight",
    "lm_head": "lm_head.weight",
}


def hf_name(name: str) -> str:
    """The Hugging Face name of an r1lite tensor name."""
    if name.startswith("layers."):
        _, idx, short = name.split(".", 2)
        return f"model.layers.{idx}.{HF_LAYER_NAMES[short]}"
    return HF_GLOBAL_NAMES[name]


# r1lite layer tensor -> GGUF name inside blk.{i}. (llama.cpp's names)
GGUF_LAYER_NAMES = {
    "attn_norm": "attn_norm.weight",
    "wq": "attn_q.weight",
    "wk": "attn_k.weight",
    "wv": "attn_v.weight",
    "bq": "attn_q.bias",
    "bk": "attn_k.bias",
    "bv": "attn_v.bias",
    "wo": "attn_output.weight",
    "ffn_norm": "ffn_norm.weight",
    "w_gate": "ffn_gate.weight",
    "w_up": "ffn_up.weight",
    "w_down": "ffn_down.weight",
}

GGUF_GLOBAL_NAMES = {
    "tok_embd": "token_embd.weight",
    "out_norm": "output_norm.weight",
    "lm_head": "output.weight",
}


def gguf_name(name: str) -> str:
    """The GGUF (llama.cpp) name of an r1lite tensor name."""
    if name.startswith("layers."):
        _, idx, short = name.split(".", 2)
        return f"blk.{idx}.{GGUF_LAYER_NAMES[short]}"
    return GGUF_GLOBAL_NAMES[name]
