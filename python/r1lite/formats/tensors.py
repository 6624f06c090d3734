"""The tensors the core expects for a config: r1lite name -> (shape, kind)."""

from __future__ import annotations

# kind: "matrix" (f32/bf16/f16 as stored) or "vector" (norm weights and biases, always f32)


def expected_tensors(cfg: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    d, v, i = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    q_dim = cfg["num_heads"] * cfg["head_dim"]
    kv_dim = cfg["num_kv_heads"] * cfg["head_dim"]
    out = {"tok_embd": ((v, d), "matrix"), "out_norm": ((d,), "vector")}
    if not cfg["tied_embeddings"]:
        out["lm_head"] = ((v, d), "matrix")
    for layer in range(cfg["num_layers"]):
        p = f"layers.{layer}."
        out[p + "attn_norm"] = ((d,), "vector")
        out[p + "wq"] = ((q_dim, d), "matrix")
        out[p + "wk"] = ((kv_dim, d), "matrix")
        out[p + "wv"] = ((kv_dim, d), "matrix")
        if cfg["qkv_bias"]:
            out[p + "bq"] = ((q_dim,), "vector")
            out[p + "bk"] = ((kv_dim,), "vector")
            out[p + "bv"] = ((kv_dim,), "vector")
        out[p + "wo"] = ((d, q_dim), "matrix")
        out[p + "ffn_norm"] = ((d,), "vector")
        out[p + "w_gate"] = ((i, d), "matrix")
        out[p + "w_up"] = ((i, d), "matrix")
        out[p + "w_down"] = ((d, i), "matrix")
    return out


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
