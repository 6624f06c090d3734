#!/usr/bin/env python3
"""Build tiny random Hugging Face checkpoints and store transformers' logits for them.

    python tools/make_fixtures.py            # rewrites tests/fixtures/

Each fixture folder holds a checkpoint (config.json + safetensors, one of them sharded) and
oracle.npz with a token sequence, transformers' logits at every position, and transformers'
greedy generate() continuation of its first tokens, and transformers' logits with the weight
matrices replaced by their q8_0 / q4_0 round trips (logits_q8_0, logits_q4_0). transformers runs
in float32 on the stored weights (bf16/f16 weights are upcast exactly), which is what r1lite
computes, so one tight tolerance holds for every storage format. Needs torch and transformers.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SEQ_LEN = 80  # longer than the llama3 specs' original context (32): crosses every rope band
GREEDY_PROMPT, GREEDY_NEW = 8, 24  # transformers' greedy generate(): prompt and new tokens

# Sizes are deliberately not powers of two and not multiples of the SIMD widths.
SPECS = {
    "qwen2_f32": dict(arch="qwen2", dtype="float32", vocab=131, hidden=72, heads=6, kv_heads=2,
                      inter=100, layers=2, tied=False),
    "qwen2_bf16_tied_sharded": dict(arch="qwen2", dtype="bfloat16", vocab=119, hidden=60, heads=5,
                                    kv_heads=1, inter=88, layers=2, tied=True, shard="40KB"),
    "llama3_f32": dict(arch="llama", dtype="float32", vocab=157, hidden=80, heads=4, kv_heads=2,
                       inter=136, layers=2, tied=False, llama3=True),
    "llama3_bf16_tied_legacy_config": dict(arch="llama", dtype="bfloat16", vocab=141, hidden=84,
                                           heads=7, kv_heads=7, inter=92, layers=3, tied=True,
                                           llama3=True, legacy_config=True),
    "llama_f16": dict(arch="llama", dtype="float16", vocab=97, hidden=56, heads=4, kv_heads=2,
                      inter=76, layers=2, tied=False, theta=500000.0),
}

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}


def make_config(spec: dict):
    from transformers import LlamaConfig, Qwen2Config

    rope = {"rope_type": "default", "rope_theta": spec.get("theta", 10000.0)}
    if spec.get("llama3"):
        rope = {**LLAMA3_ROPE, "rope_theta": spec.get("theta", 10000.0)}
    common = dict(vocab_size=spec["vocab"], hidden_size=spec["hidden"],
                  num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
                  intermediate_size=spec["inter"], num_hidden_layers=spec["layers"],
                  tie_word_embeddings=spec["tied"], max_position_embeddings=256,
                  rms_norm_eps=1e-5, rope_parameters=rope)
    if spec["arch"] == "qwen2":
        return Qwen2Config(**common)
    return LlamaConfig(**common)


def build_checkpoint(spec: dict, out: Path, seed: int) -> None:
    """A random checkpoint of `spec` saved to `out` as transformers writes it."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(spec), dtype=torch.float32)
    with torch.no_grad():  # weights large enough that every term matters in the logits
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
    model = model.to(getattr(torch, spec["dtype"]))
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, max_shard_size=spec.get("shard", "50GB"))
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)
    if spec.get("legacy_config"):
        write_legacy_rope_config(out / "config.json")


def write_legacy_rope_config(path: Path) -> None:
    """Rewrite transformers 5's rope_parameters as published checkpoints have it: rope_theta and
    rope_scaling at the top level."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    path.write_text(json.dumps(cfg, indent=2))


def transformers_logits(folder: Path, tokens: np.ndarray) -> np.ndarray:
    """transformers' float32 logits [len(tokens), vocab] for the checkpoint in `folder`."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(tokens, dtype=torch.long)[None])
    return out.logits[0].float().numpy()


def transformers_logits_quantized(folder: Path, tokens: np.ndarray, fmt: str) -> np.ndarray:
    """transformers' logits with every weight matrix replaced by its `fmt` round trip (what
    `r1lite convert --quant fmt` stores): an oracle for r1lite's quantized kernels."""
    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
    from r1lite import quant

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                w = p.numpy()
                q, _, d = quant.encode(w, fmt)
                p.copy_(torch.from_numpy(quant.dequantize(fmt, q, d, w.shape[1])))
        out = model(torch.tensor(tokens, dtype=torch.long)[None])
    return out.logits[0].float().numpy()


def transformers_greedy(folder: Path, prompt: np.ndarray, n_new: int) -> np.ndarray:
    """transformers' greedy generate() continuation (n_new tokens, no EOS) of prompt."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        out = model.generate(torch.tensor(prompt, dtype=torch.long)[None], do_sample=False,
                             max_new_tokens=n_new, min_new_tokens=n_new, eos_token_id=None,
                             pad_token_id=0)
    return out[0, len(prompt):].numpy()


def make_fixture(name: str, spec: dict, out_root: Path = FIXTURES, seed: int = 0) -> Path:
    out = out_root / name
    build_checkpoint(spec, out, seed)
    tokens = np.random.default_rng(seed + 1).integers(0, spec["vocab"], SEQ_LEN, dtype=np.int64)
    logits = transformers_logits(out, tokens)
    prompt = tokens[:GREEDY_PROMPT]
    greedy = transformers_greedy(out, prompt, GREEDY_NEW)
    quantized = {f"logits_{fmt}": transformers_logits_quantized(out, tokens, fmt)
                 for fmt in ("q8_0", "q4_0")}
    np.savez_compressed(out / "oracle.npz", tokens=tokens.astype(np.int32), logits=logits,
                        greedy_prompt=prompt.astype(np.int32), greedy_tokens=greedy.astype(np.int32),
                        **quantized)
    return out


def main() -> int:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for i, (name, spec) in enumerate(SPECS.items()):
        out = make_fixture(name, spec, seed=i)
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"{name}: {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
