"""A tiny random Qwen2 model carrying the real R1-Distill-Qwen tokenizer and chat template, built
with numpy (no torch), for generation, streaming and CLI tests."""

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ASSETS = Path(__file__).resolve().parent / "assets" / "deepseek-r1-distill-qwen"
VOCAB = 151936  # the 1.5B model's padded vocabulary


def assets_dir() -> Path:
    assert (ASSETS / "tokenizer.json").is_file(), f"test assets missing: {ASSETS}"
    return ASSETS


def build_tiny_r1(out: Path, seed: int = 0, revised_template: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    hidden, heads, kv_heads, head_dim, inter = 16, 2, 1, 8, 24
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": VOCAB,
           "hidden_size": hidden, "num_hidden_layers": 1, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "intermediate_size": inter, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "max_position_embeddings": 4096, "tie_word_embeddings": True,
           "bos_token_id": 151643, "eos_token_id": 151643}
    (out / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(seed)
    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    p = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": w(VOCAB, hidden) * 4, "model.norm.weight": np.ones(hidden, np.float32),
        p + "input_layernorm.weight": np.ones(hidden, np.float32),
        p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
        p + "self_attn.q_proj.weight": w(heads * head_dim, hidden),
        p + "self_attn.q_proj.bias": np.zeros(heads * head_dim, np.float32),
        p + "self_attn.k_proj.weight": w(kv_heads * head_dim, hidden),
        p + "self_attn.k_proj.bias": np.zeros(kv_heads * head_dim, np.float32),
        p + "self_attn.v_proj.weight": w(kv_heads * head_dim, hidden),
        p + "self_attn.v_proj.bias": np.zeros(kv_heads * head_dim, np.float32),
        p + "self_attn.o_proj.weight": w(hidden, heads * head_dim),
        p + "mlp.gate_proj.weight": w(inter, hidden), p + "mlp.up_proj.weight": w(inter, hidden),
        p + "mlp.down_proj.weight": w(hidden, inter),
    }
    save_file(tensors, str(out / "model.safetensors"))
    src = assets_dir()
    for name in ("tokenizer.json", "generation_config.json"):
        shutil.copy(src / name, out / name)
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text())
    if revised_template:  # the February 2025 template: the generation prompt opens <think>
        tok_cfg["chat_template"] = tok_cfg["chat_template"].replace(
            "{{'<｜Assistant｜>'}}{% endif %}", "{{'<｜Assistant｜><think>\\n'}}{% endif %}")
        assert "<think>\\n'}}" in tok_cfg["chat_template"]
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return out


def fake_hub_cache(root: Path, repo_id: str, src: Path) -> Path:
    """`src`'s files as a model in a Hugging Face hub cache at `root`, in the layout
    huggingface_hub keeps (models--owner--name/{refs/main, snapshots/<rev>/...}): hub ids resolve
    from it offline (HF_HUB_CACHE=root, HF_HUB_OFFLINE=1), no network."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    shutil.copytree(src, repo / "snapshots" / rev, ignore=shutil.ignore_patterns("oracle.npz"))
    return root
