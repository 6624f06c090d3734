"""The tensors the core expects for a config: r1lite name -> (shape, kind), and lazily read
tensors."""

from __future__ import annotations

# kind: "matrix" (stored as the checkpoint or the conversion chooses) or "f32" (norm weights,
# biases and the MoE router: always f32, never quantized)


def _ffn(out: dict, prefix: str, d: int, width: int) -> None:
    out[prefix + "w_gate"] = ((width, d), "matrix")
    out[prefix + "w_up"] = ((width, d), "matrix")
    out[prefix + "w_down"] = ((d, width), "matrix")


def _gqa(out: dict, p: str, cfg: dict) -> None:
    d = cfg["hidden_size"]
    q_dim = cfg["num_heads"] * cfg["head_dim"]
    kv_dim = cfg["num_kv_heads"] * cfg["head_dim"]
    out[p + "wq"] = ((q_dim, d), "matrix")
    out[p + "wk"] = ((kv_dim, d), "matrix")
    out[p + "wv"] = ((kv_dim, d), "matrix")
    if cfg["qkv_bias"]:
        out[p + "bq"] = ((q_dim,), "f32")
        out[p + "bk"] = ((kv_dim,), "f32")
        out[p + "bv"] = ((kv_dim,), "f32")
    out[p + "wo"] = ((d, q_dim), "matrix")


def _mla(out: dict, p: str, cfg: dict) -> None:
    d, h = cfg["hidden_size"], cfg["num_heads"]
    c, ql = cfg["kv_lora_rank"], cfg["q_lora_rank"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    if ql == 0:
        out[p + "wq"] = ((h * (dn + dr), d), "matrix")
    else:
        out[p + "wq_a"] = ((ql, d), "matrix")
        out[p + "q_a_norm"] = ((ql,), "f32")
        out[p + "wq_b"] = ((h * (dn + dr), ql), "matrix")
    out[p + "wkv_a"] = ((c + dr, d), "matrix")
    out[p + "kv_a_norm"] = ((c,), "f32")
    out[p + "w_uk_t"] = ((h * c, dn), "matrix")
    out[p + "w_uv"] = ((h * dv, c), "matrix")
    out[p + "wo"] = ((d, h * dv), "matrix")


def _moe(out: dict, p: str, cfg: dict) -> None:
    d, e, width = cfg["hidden_size"], cfg["num_experts"], cfg["moe_intermediate_size"]
    out[p + "router"] = ((e, d), "f32")
    if cfg["router_bias"]:
        out[p + "router_bias"] = ((e,), "f32")
    for expert in range(e):
        _ffn(out, f"{p}experts.{expert}.", d, width)
    if cfg["num_shared_experts"]:
        _ffn(out, p + "shared.", d, width * cfg["num_shared_experts"])


def is_moe_layer(cfg: dict, layer: int) -> bool:
    return cfg.get("num_experts", 0) > 0 and layer >= cfg["moe_first_layer"]


def expected_tensors(cfg: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    d, v = cfg["hidden_size"], cfg["vocab_size"]
    out = {"tok_embd": ((v, d), "matrix"), "out_norm": ((d,), "f32")}
    if not cfg["tied_embeddings"]:
        out["lm_head"] = ((v, d), "matrix")
    for layer in range(cfg["num_layers"]):
        p = f"layers.{layer}."
        out[p + "attn_norm"] = ((d,), "f32")
        (_mla if cfg.get("attention") == "mla" else _gqa)(out, p, cfg)
        out[p + "ffn_norm"] = ((d,), "f32")
        if is_moe_layer(cfg, layer):
            _moe(out, p, cfg)
        else:
            _ffn(out, p, d, cfg["intermediate_size"])
    return out


class LazyTensor:
    """A tensor read (dequantized, re-laid-out) only when asked for: a conversion takes one at a
    time, so its memory stays bounded by the largest tensor rather than the checkpoint."""

    def __init__(self, read):
        self._read = read

    def get(self) -> tuple:
        return self._read()


def materialize(entry) -> tuple:
    """(array, format[, scales]) of a tensor entry, reading it now if it is lazy."""
    return entry.get() if isinstance(entry, LazyTensor) else entry


def as_f32(arr, fmt: str):
    """A float32 copy (or the array itself when already f32) of a tensor stored as `fmt`."""
    import numpy as np

    if fmt == "f32":
        return np.ascontiguousarray(arr, dtype=np.float32)
    if fmt == "bf16":
        return (np.asarray(arr, dtype=np.uint32) << 16).view(np.float32)
    if fmt == "f16":
        return np.asarray(arr, dtype=np.float32)
    raise ValueError(f"cannot convert format {fmt!r} to f32")
