"""Every checkpoint tensor name r1lite knows, mapped onto r1lite's own names (csrc/model/model.h).
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
    "wo": ("self_attn.o_proj.weight", "attn_output.weight"),
    "ffn_norm": ("post_attention_layernorm.weight", "ffn_norm.weight"),
    "w_gate": ("mlp.gate_proj.weight", "ffn_gate.weight"),
    "w_up": ("mlp.up_proj.weight", "ffn_up.weight"),
    "w_down": ("mlp.down_proj.weight", "ffn_down.weight"),
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
        return LAYER_PREFIX[scheme].format(idx) + LAYER_NAMES[short][scheme]
    return GLOBAL_NAMES[name][scheme]


def hf_name(name: str) -> str:
    """The Hugging Face name of an r1lite tensor name."""
    return _name(name, HF)


def gguf_name(name: str) -> str:
    """The GGUF (llama.cpp) name of an r1lite tensor name."""
    return _name(name, GGUF)
