"""A 32K-token context on a tiny model: the last position's logits against a plain numpy forward
(written from ARCH.md §7, not from r1lite), and memory that follows the context used."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import r1lite

N = 32768


def numpy_last_logits(folder, tokens: np.ndarray) -> np.ndarray:
    """Qwen2 logits of the last position, in float64: RMSNorm, q/k/v with biases, rotate-half
    RoPE, grouped-query causal attention (the last query sees every position), SwiGLU MLP."""
    cfg = json.loads((folder / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()}
    d, heads, kv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps = d // heads, cfg["rms_norm_eps"]
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, hd, 2) / hd)

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x, pos):  # x [..., hd], pos [n]
        ang = pos[:, None] * inv[None, :]
        cos, sin = np.concatenate([np.cos(ang)] * 2, -1), np.concatenate([np.sin(ang)] * 2, -1)
        half = hd // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return x * cos[:, None, :] + rot * sin[:, None, :]

    assert cfg["num_hidden_layers"] == 1, "the reference follows only the last position: one layer"
    x = w["model.embed_tokens.weight"][tokens]
    pos = np.arange(len(tokens), dtype=np.float64)
    for layer in range(1):
        p = f"model.layers.{layer}."
        h = norm(x, w[p + "input_layernorm.weight"])
        q = h[-1:] @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"]
        k = h @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"]
        v = h @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"]
        q = rope(q.reshape(1, heads, hd), pos[-1:])[0]
        k = rope(k.reshape(-1, kv, hd), pos)
        v = v.reshape(-1, kv, hd)
        out = np.empty((heads, hd))
        for head in range(heads):
            g = head // (heads // kv)
            s = k[:, g, :] @ q[head] / np.sqrt(hd)
            p_ = np.exp(s - s.max())
            out[head] = (p_ / p_.sum()) @ v[:, g, :]
        last = x[-1] + out.reshape(-1) @ w[p + "self_attn.o_proj.weight"].T
        h = norm(last, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = last + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return norm(x, w["model.norm.weight"]) @ head.T


def test_32k_context(tiny_r1):
    model = r1lite.load(tiny_r1, threads=2, context=N)
    core = model._core
    assert core.cache_bytes == 0  # nothing allocated for the 32K configured
    tokens = np.random.default_rng(3).integers(0, model.config["vocab_size"], N).astype(np.int32)
    for i in range(0, N - 1, 4096):
        core.forward(tokens[i:min(i + 4096, N - 1)], False)
        # memory follows the positions used: whole pages of 256
        assert core.cache_bytes == -(-core.n_past // 256) * 256 * model.kv_bytes_per_token
    got = core.forward(tokens[N - 1:], False)  # the last position, decoded on its own
    want = numpy_last_logits(tiny_r1, tokens)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert core.n_past == N
    with pytest.raises(ValueError, match="context full"):
        core.forward(tokens[:1], False)
    with pytest.raises(ValueError, match="do not fit the context"):
        model.logits(np.zeros(N + 1, np.int32))
