"""Quantization recipes: which weight format each tensor of a model gets for a `--quant` name.

tensor_formats(config, quant) maps every tensor the core expects for the config
(formats.tensors.expected_tensors) to a format of the core's table. Norms, biases and the MoE
router ("f32" tensors) always stay f32. The recipes:

- f32, bf16, f16: every matrix in that float format.
- q8_0, q4_0: r1lite's planar block formats (quant.py) for every matrix; under q4_0 the output
  head (lm_head, or tok_embd when the embeddings are tied) stays q8_0: llama.cpp keeps its
  head at 6 bits, and a 4-bit head alone costs r1lite's q4_0 several points of perplexity.
- q6_k, q5_k_m, q4_k_m, q3_k_m, q2_k: llama.cpp's K-quant mixes (src/llama-quant.cpp,
  llama_tensor_get_type, as llama-quantize chooses without an importance matrix), simplified:
  the base type for most matrices; the output head Q6_K; the token embedding the base type
  (Q6_K with the head when tied); attn_v and ffn_down more bits on some layers; attn_output
  more bits under Q2_K/Q3_K_M; and a matrix whose width does not fit the type's 256-value
  blocks falls back as llama.cpp does (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1,
  Q6_K -> Q8_0, then F16 when not even 32 divides the width).

- moe-q2_k, moe-q3_k: expert-aware mixes for mixture-of-experts models (DeepSeek V2/V3/R1), in
  the spirit of the "dynamic" low-bit R1 files people run: the routed experts -- nearly all of
  the weights (R1: 652 of 671 B) but only 8 of 256 read per token -- at 2-3 bits (gate/up Q2_K
  and down Q3_K, or Q3_K and Q4_K), and everything every token reads -- attention, the shared
  experts, the dense first layers, the embedding -- at Q4_K (Q5_K), attn_v-like matrices and the
  output head at Q6_K. R1 at moe-q2_k: 247 GB in memory, about llama.cpp's Q2_K mix (244 GB),
  but the 17.5 GB each token reads are mostly at 4-6 bits where Q2_K's 14.6 GB are at 2-3
  (`r1lite info MODEL --plan`). moe-iq2_xxs: the routed experts in GGUF's 2-bit i-quants (gate/up
  IQ2_XXS, 2.06 bits; down IQ2_XS, 2.31), the rest as moe-q2_k: R1 in 186 GB. The i-quants want
  an importance matrix (llama-quantize refuses them without one; r1lite warns). Smaller still are
  IQ1_S / IQ1_M experts (1.56 / 1.75 bits, the 1.58-bit R1 files), which r1lite runs but does
  not write yet.
- iq2_xxs, iq2_xs, iq2_s: every matrix in that i-quant (r1lite's own quantizer,
  formats/iq2_quantizers.py), the output head Q6_K and an untied token embedding Q4_K (llama.cpp
  keeps both higher too); a width 256 does not divide falls back to IQ4_NL as in llama.cpp.

r1lite's tensors map onto llama.cpp's categories: wv is attn_v; for MLA (DeepSeek) w_uk_t and
w_uv, both cut from kv_b_proj (llama.cpp's attn_kv_b, an attn_v-like tensor), are attn_v;
wk is attn_k, wo attn_output; w_down, shared.w_down and every routed expert's w_down are
ffn_down (llama.cpp takes their layer from the name, as here). Everything else -- wq, w_gate,
w_up, the MLA projections wq_a/wq_b/wkv_a (attn_kv_a_mqa, which llama.cpp leaves to the base
type for DeepSeek) and the experts' gate/up -- gets the base type. Left out of llama.cpp's
rules: the 70B-model and Falcon special cases and anything that needs an importance matrix.
"""

from __future__ import annotations

from .formats.block_quantizers import BLOCK_SIZES
from .formats.tensors import expected_tensors

# quant name -> one line for the CLI's --help
RECIPES = {
    "f32": "every matrix in float32 (4 bytes a weight, no rounding)",
    "bf16": "every matrix in bfloat16 (2 bytes a weight)",
    "f16": "every matrix in float16 (2 bytes a weight)",
    "q8_0": "r1lite's planar 8-bit blocks of 32 (8.5 bits a weight), nearly lossless",
    "q4_0": "r1lite's planar 4-bit blocks of 32 (4.5 bits a weight), the output head at q8_0",
    "q6_k": "llama.cpp's Q6_K: 6-bit K-quants (6.56 bits a weight) throughout",
    "q5_k_m": "llama.cpp's Q5_K_M mix: Q5_K, Q6_K for the head and some layers' attn_v/ffn_down",
    "q4_k_m": "llama.cpp's Q4_K_M mix: Q4_K, Q6_K for the head and some layers' attn_v/ffn_down",
    "q3_k_m": "llama.cpp's Q3_K_M mix: Q3_K, Q4_K/Q5_K for attn_v, attn_output and ffn_down, Q6_K head",
    "q2_k": "llama.cpp's Q2_K mix: Q2_K, Q3_K/Q4_K for attn_v, attn_output and ffn_down, Q6_K head",
    "moe-q2_k": "MoE models: routed experts Q2_K (down Q3_K), the rest Q4_K, attn_v and head Q6_K",
    "moe-q3_k": "MoE models: routed experts Q3_K (down Q4_K), the rest Q5_K, attn_v and head Q6_K",
    "moe-iq2_xxs": "MoE models: routed experts IQ2_XXS (down IQ2_XS), the rest Q4_K, attn_v and head "
                   "Q6_K (wants --imatrix)",
    "iq2_xxs": "GGUF's IQ2_XXS i-quant (2.06 bits a weight) throughout, head Q6_K (wants --imatrix)",
    "iq2_xs": "GGUF's IQ2_XS i-quant (2.31 bits a weight) throughout, head Q6_K (wants --imatrix)",
    "iq2_s": "GGUF's IQ2_S i-quant (2.56 bits a weight) throughout, head Q6_K (wants --imatrix)",
}

# expert-aware mixes: (experts' gate/up, experts' down, every other matrix)
_MOE_MIX = {"moe-q2_k": ("q2_k", "q3_k", "q4_k"), "moe-q3_k": ("q3_k", "q4_k", "q5_k"),
            "moe-iq2_xxs": ("iq2_xxs", "iq2_xs", "q4_k")}

# the pure i-quant recipes: every matrix in that format but the head and the embedding
_IQ_PURE = ("iq2_xxs", "iq2_xs", "iq2_s")


def wants_imatrix(quant: str) -> bool:
    """Whether a recipe writes i-quants, whose 2-bit codebooks lose much more without an
    importance matrix (llama-quantize refuses them without one)."""
    return quant in _IQ_PURE or quant == "moe-iq2_xxs"


def applies(config: dict, quant: str) -> bool:
    """Whether a recipe can be used on a model (the expert-aware mixes need routed experts)."""
    return quant not in _MOE_MIX or bool(config.get("num_experts"))

FLOAT_RECIPES = ("f32", "bf16", "f16")

# K-quant mix -> its base type (llama_ftype_get_default_type)
_K_BASE = {"q6_k": "q6_k", "q5_k_m": "q5_k", "q4_k_m": "q4_k", "q3_k_m": "q3_k", "q2_k": "q2_k"}

# llama.cpp's tensor_type_fallback: a type for widths its blocks do not divide
_FALLBACK = {"q2_k": "gguf_q4_0", "q3_k": "gguf_q4_0", "q4_k": "q5_0", "q5_k": "q5_1",
             "q6_k": "gguf_q8_0", "iq4_xs": "iq4_nl", "iq2_xxs": "iq4_nl", "iq2_xs": "iq4_nl",
             "iq2_s": "iq4_nl"}

_ATTN_V = {"wv", "w_uk_t", "w_uv"}  # MLA: both halves of kv_b_proj (llama.cpp's attn_kv_b)


# r1lite's planar formats -> the GGUF block format of the same values (for writing GGUF files)
GGUF_EQUIVALENT = {"q8_0": "gguf_q8_0", "q4_0": "gguf_q4_0"}


def gguf_tensor_formats(config: dict, quant: str) -> dict[str, str]:
    """tensor_formats in formats a GGUF file can hold (r1lite's planar q8_0 / q4_0 as GGUF's blocks)."""
    return {name: GGUF_EQUIVALENT.get(fmt, fmt) for name, fmt in tensor_formats(config, quant).items()}


def describe_recipes() -> str:
    """The recipes, one `name: description` line each (for --help)."""
    width = max(len(name) for name in RECIPES)
    return "\n".join(f"{name:<{width}}  {text}" for name, text in RECIPES.items())


def tensor_formats(config: dict, quant: str) -> dict[str, str]:
    """r1lite tensor name -> weight format for every tensor the config calls for, under the
    recipe `quant` (a key of RECIPES)."""
    if quant not in RECIPES:
        raise ValueError(f"unknown quantization {quant!r} (choose from {', '.join(RECIPES)})")
    if not applies(config, quant):
        raise ValueError(f"--quant {quant} is for mixture-of-experts models (routed experts); "
                         f"this {config['architecture']} model has none")
    specs = expected_tensors(config)
    head = "lm_head" if "lm_head" in specs else "tok_embd"
    n_layers = int(config["num_layers"])
    out = {}
    for name, (shape, kind) in specs.items():
        if kind == "f32":
            out[name] = "f32"
        elif quant in FLOAT_RECIPES or quant == "q8_0":
            out[name] = quant
        elif quant == "q4_0":
            out[name] = "q8_0" if name == head else "q4_0"
        elif quant in _MOE_MIX:
            out[name] = _moe_mix_format(quant, name, int(shape[-1]), name == head)
        elif quant in _IQ_PURE:
            fmt = "q6_k" if name == head else "q4_k" if name == "tok_embd" else quant
            out[name] = fallback_format(fmt, int(shape[-1]))
        else:
            out[name] = _k_mix_format(config, quant, name, int(shape[-1]), name == head, n_layers)
    return out


def _moe_mix_format(quant: str, name: str, cols: int, is_head: bool) -> str:
    gate_up, down, rest = _MOE_MIX[quant]
    role, _ = _role(name)
    if ".experts." in name:  # routed experts (shared experts are "shared.*": read every token)
        fmt = down if role == "ffn_down" else gate_up
    elif is_head or role == "attn_v":
        fmt = "q6_k"
    else:
        fmt = rest
    return fallback_format(fmt, cols)


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third
    layer in between."""
    return (i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8
            or (i_layer - n_layers // 8) % 3 == 2)


def _role(name: str) -> tuple[str, int]:
    """(llama.cpp's category for the quantization rules, layer index or -1)."""
    if not name.startswith("layers."):
        return name, -1  # tok_embd, lm_head
    _, idx, short = name.split(".", 2)
    what = short.rsplit(".", 1)[-1]  # experts.{e}.w_down, shared.w_down -> w_down
    if short in _ATTN_V:
        role = "attn_v"
    elif short == "wk":
        role = "attn_k"
    elif short == "wo":
        role = "attn_output"
    elif what == "w_down":
        role = "ffn_down"
    else:
        role = "other"
    return role, int(idx)


def _k_mix_format(config: dict, quant: str, name: str, cols: int, is_head: bool, n_layers: int) -> str:
    base = _K_BASE[quant]
    n_expert = int(config.get("num_experts") or 0)
    heads, kv_heads = int(config.get("num_heads") or 1), int(config.get("num_kv_heads") or 1)
    n_gqa = heads // max(kv_heads, 1)
    role, i = _role(name)
    fmt = base
    if is_head:
        # the output head (and the embedding when it is the head): Q6_K, Q8_0 when the base
        # type's blocks do not fit its width
        fmt = "gguf_q8_0" if cols % BLOCK_SIZES[base] else "q6_k"
    elif role == "tok_embd":
        fmt = base
    elif role == "attn_v":
        if quant == "q2_k":
            fmt = "q4_k" if n_gqa >= 4 else "q3_k"
        elif quant == "q3_k_m":
            fmt = "q5_k" if i < 2 else "q4_k"
        elif quant in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n_layers):
            fmt = "q6_k"
        if n_expert == 8:
            fmt = "gguf_q8_0"
    elif role == "attn_k":
        if n_expert == 8:
            fmt = "gguf_q8_0"
    elif role == "ffn_down":
        if quant == "q2_k":
            fmt = "q3_k"
        elif quant == "q3_k_m":
            fmt = "q5_k" if i < n_layers // 16 else "q4_k"
        elif quant in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n_layers):
            fmt = "q6_k"
    elif role == "attn_output":
        if n_expert == 8:
            if quant in ("q2_k", "q3_k_m", "q4_k_m"):
                fmt = "q5_k"
        elif quant == "q2_k":
            fmt = "q3_k"
        elif quant == "q3_k_m":
            fmt = "q4_k"
    return fallback_format(fmt, cols)


def fallback_format(fmt: str, cols: int) -> str:
    """`fmt`, or what llama.cpp stores instead when its blocks do not divide the width `cols`
    (f16 when not even the fallback's do). Float and r1lite's planar formats take any width."""
    if fmt not in BLOCK_SIZES or cols % BLOCK_SIZES[fmt] == 0:
        return fmt
    fb = _FALLBACK.get(fmt, fmt)
    return fb if cols % BLOCK_SIZES[fb] == 0 else "f16"
