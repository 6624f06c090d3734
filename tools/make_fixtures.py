#!/usr/bin/env python3
"""Build tiny random Hugging Face checkpoints and store transformers' logits for them.

    python tools/make_fixtures.py            # rewrites tests/fixtures/
    python tools/make_fixtures.py qwen3_f32  # rewrites the fixtures named
    python tools/make_fixtures.py --quantized-oracles [NAME...]  # only logits_q8_0 / logits_q4_0

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
    # DeepSeek (ARCH.md §4-6, §10): MLA, YaRN past its original context of 32, dense layer 0 then
    # MoE layers; top-k never exceeds the experts of the kept groups (§6 edge case).
    "deepseek_v3_f32": dict(arch="deepseek_v3", dtype="float32", vocab=151, hidden=72, heads=3,
                            q_lora=40, kv_lora=36, nope=20, rope=12, v=18, inter=100, moe_inter=28,
                            experts=8, shared=2, top_k=3, n_group=4, topk_group=2, layers=3,
                            first_dense=1, yarn=dict(factor=4.0, mscale=1.0, mscale_all_dim=0.8)),
    "deepseek_v3_bf16_no_qlora": dict(arch="deepseek_v3", dtype="bfloat16", vocab=131, hidden=60,
                                      heads=4, q_lora=None, kv_lora=28, nope=14, rope=10, v=22,
                                      inter=84, moe_inter=20, experts=6, shared=1, top_k=2,
                                      n_group=1, topk_group=1, layers=3, first_dense=1,
                                      norm_topk=False, scale=1.5, rope_interleave=False,
                                      yarn=dict(factor=2.0, mscale=1.0, mscale_all_dim=1.0)),
    "deepseek_v3_fp8": dict(arch="deepseek_v3", dtype="float32", vocab=139, hidden=76, heads=2,
                            q_lora=44, kv_lora=40, nope=18, rope=8, v=26, inter=92, moe_inter=36,
                            experts=8, shared=1, top_k=2, n_group=2, topk_group=1, layers=2,
                            first_dense=1, fp8_block=(32, 24),
                            yarn=dict(factor=4.0, mscale=1.0, mscale_all_dim=1.0)),
    # DeepSeek-V3 with a multi-token-prediction module (layer num_hidden_layers, ARCH.md §2): its
    # oracle adds mtp_logits from mtp_reference() (transformers has no MTP).
    "deepseek_v3_mtp_f32": dict(arch="deepseek_v3", dtype="float32", vocab=127, hidden=64, heads=2,
                                q_lora=36, kv_lora=32, nope=16, rope=10, v=14, inter=80, moe_inter=24,
                                experts=6, shared=1, top_k=2, n_group=3, topk_group=2, layers=2,
                                first_dense=1, mtp=True,
                                yarn=dict(factor=4.0, mscale=1.0, mscale_all_dim=0.8)),
    "deepseek_v2_f32": dict(arch="deepseek_v2", dtype="float32", vocab=127, hidden=64, heads=4,
                            q_lora=None, kv_lora=30, nope=16, rope=8, v=16, inter=96, moe_inter=24,
                            experts=8, shared=2, top_k=2, n_group=1, topk_group=1, layers=3,
                            first_dense=1, topk_method="greedy", scale=1.0,
                            yarn=dict(factor=4.0, mscale=0.707, mscale_all_dim=0.707)),
    "deepseek_v2_group_limited_bf16_sharded": dict(
        arch="deepseek_v2", dtype="bfloat16", vocab=113, hidden=54, heads=3, q_lora=36, kv_lora=26,
        nope=12, rope=6, v=14, inter=76, moe_inter=18, experts=8, shared=1, top_k=3, n_group=4,
        topk_group=2, layers=3, first_dense=1, topk_method="group_limited_greedy", scale=2.0,
        shard="60KB", yarn=dict(factor=4.0, mscale=0.707, mscale_all_dim=0.707)),
    # Qwen3 (ARCH.md §11): per-head q/k RMSNorm, head_dim unlike hidden/heads, no biases.
    "qwen3_f32": dict(arch="qwen3", dtype="float32", vocab=137, hidden=64, heads=4, kv_heads=2,
                      head_dim=22, inter=92, layers=2, tied=False, theta=1000000.0),
    "qwen3_bf16_tied": dict(arch="qwen3", dtype="bfloat16", vocab=109, hidden=54, heads=3,
                            kv_heads=1, head_dim=14, inter=70, layers=3, tied=True),
}

LLAMA3_ROPE = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}


def make_deepseek_config(spec: dict):
    from transformers import DeepseekV2Config, DeepseekV3Config

    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "original_max_position_embeddings": 32,
            "beta_fast": 32, "beta_slow": 1, **spec["yarn"]}
    common = dict(vocab_size=spec["vocab"], hidden_size=spec["hidden"],
                  num_attention_heads=spec["heads"], num_key_value_heads=spec["heads"],
                  q_lora_rank=spec["q_lora"], kv_lora_rank=spec["kv_lora"],
                  qk_nope_head_dim=spec["nope"], qk_rope_head_dim=spec["rope"],
                  v_head_dim=spec["v"], intermediate_size=spec["inter"],
                  moe_intermediate_size=spec["moe_inter"], n_routed_experts=spec["experts"],
                  n_shared_experts=spec["shared"], num_experts_per_tok=spec["top_k"],
                  n_group=spec["n_group"], topk_group=spec["topk_group"],
                  num_hidden_layers=spec["layers"], first_k_dense_replace=spec["first_dense"],
                  routed_scaling_factor=spec.get("scale", 2.5), tie_word_embeddings=False,
                  max_position_embeddings=256, rms_norm_eps=1e-5, rope_parameters=rope)
    if spec["arch"] == "deepseek_v3":
        return DeepseekV3Config(**common, norm_topk_prob=spec.get("norm_topk", True),
                                rope_interleave=spec.get("rope_interleave", True))
    return DeepseekV2Config(**common, topk_method=spec["topk_method"], norm_topk_prob=False)


def make_config(spec: dict):
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    if spec["arch"].startswith("deepseek"):
        return make_deepseek_config(spec)
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
    if spec["arch"] == "qwen3":
        return Qwen3Config(**common, head_dim=spec["head_dim"])
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
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):  # large enough to change the choice
                b.copy_(0.3 * torch.randn_like(b))
    model = model.to(getattr(torch, spec["dtype"]))
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, max_shard_size=spec.get("shard", "50GB"))
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)
    if spec.get("legacy_config"):
        write_legacy_rope_config(out / "config.json")
    if spec.get("fp8_block"):
        write_fp8_checkpoint(out, spec["fp8_block"])
    if spec.get("mtp"):
        write_mtp_layer(out, model, seed)


MTP_FILE = "mtp.safetensors"


def write_mtp_layer(folder: Path, model, seed: int) -> None:
    """DeepSeek's MTP module as layer num_hidden_layers in its own file, listed with the main file
    in model.safetensors.index.json (README_WEIGHTS.md of DeepSeek-V3): a decoder block like the
    last layer (transformers' DeepseekV3DecoderLayer, randomly initialized), enorm, hnorm, eh_proj
    [D, 2D], shared_head.norm, and copies of the embedding and lm_head as the checkpoint ships them."""
    import torch
    from safetensors.torch import save_file
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer

    cfg = model.config
    n, d = cfg.num_hidden_layers, cfg.hidden_size
    torch.manual_seed(seed + 1000)
    block = DeepseekV3DecoderLayer(cfg, layer_idx=n)
    tensors = {}
    with torch.no_grad():
        for name, p in block.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if name.endswith("norm.weight")
                    else torch.randn_like(p) / p.shape[-1] ** 0.5)
            tensors[name] = p
        for name, b in block.named_buffers():
            if name.endswith("e_score_correction_bias"):
                tensors[name] = 0.3 * torch.randn_like(b)
        # transformers holds the experts fused; checkpoints list them one by one
        gate_up, down = tensors.pop("mlp.experts.gate_up_proj"), tensors.pop("mlp.experts.down_proj")
        width = gate_up.shape[1] // 2
        for e in range(gate_up.shape[0]):
            tensors[f"mlp.experts.{e}.gate_proj.weight"] = gate_up[e, :width]
            tensors[f"mlp.experts.{e}.up_proj.weight"] = gate_up[e, width:]
            tensors[f"mlp.experts.{e}.down_proj.weight"] = down[e]
        tensors["enorm.weight"] = 1.0 + 0.2 * torch.randn(d)
        tensors["hnorm.weight"] = 1.0 + 0.2 * torch.randn(d)
        tensors["eh_proj.weight"] = torch.randn(d, 2 * d) / (2 * d) ** 0.5
        tensors["shared_head.norm.weight"] = 1.0 + 0.2 * torch.randn(d)
        tensors["embed_tokens.weight"] = model.model.embed_tokens.weight
        tensors["shared_head.head.weight"] = model.lm_head.weight
    tensors = {f"model.layers.{n}.{k}": v.detach().to(model.dtype).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(folder / MTP_FILE))
    from safetensors import safe_open

    weight_map = {}
    for file in ("model.safetensors", MTP_FILE):
        with safe_open(str(folder / file), "pt") as f:
            weight_map.update({k: file for k in f.keys()})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))


def mtp_reference(folder: Path, tokens: np.ndarray) -> np.ndarray:
    """The MTP module's logits [len(tokens) - 1, vocab], written from its definition (DeepSeek-V3
    report §2.2; enorm/hnorm/eh_proj/shared_head as the engines that serve these weights use them):
    at position j, with h_j the main model's final (normed) hidden state and t_{j+1} the next token,
      x = eh_proj([enorm(embed(t_{j+1})); hnorm(h_j)]); x = block(x) at positions 0..;
      logits = head(shared_head.norm(x))     predicting t_{j+2}.
    The block is transformers' DeepseekV3DecoderLayer with the layer's weights."""
    import torch
    from safetensors import safe_open
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer

    model = load_transformers(folder)
    cfg = model.config
    n = cfg.num_hidden_layers
    prefix = f"model.layers.{n}."
    with safe_open(str(folder / MTP_FILE), "pt") as f:
        w = {k[len(prefix):]: f.get_tensor(k).float() for k in f.keys()}
    cfg._attn_implementation = "eager"
    block = DeepseekV3DecoderLayer(cfg, layer_idx=n).float().eval()
    experts = block.mlp.experts.gate_up_proj.shape[0]
    w["mlp.experts.gate_up_proj"] = torch.stack([torch.cat([w[f"mlp.experts.{e}.gate_proj.weight"],
                                                            w[f"mlp.experts.{e}.up_proj.weight"]])
                                                 for e in range(experts)])
    w["mlp.experts.down_proj"] = torch.stack([w[f"mlp.experts.{e}.down_proj.weight"] for e in range(experts)])
    block.load_state_dict({k: v for k, v in w.items() if k in block.state_dict()}, strict=True)

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps))

    ids = torch.tensor(tokens, dtype=torch.long)[None]
    m = len(tokens) - 1
    with torch.no_grad():
        h = model.model(ids).last_hidden_state[:, :m]             # h_j after the final norm
        e = w["embed_tokens.weight"][ids[:, 1:]]                   # embed(t_{j+1})
        x = torch.cat([rms(e, w["enorm.weight"]), rms(h, w["hnorm.weight"])], dim=-1) @ w["eh_proj.weight"].T
        pos = torch.arange(m)[None]
        cos_sin = model.model.rotary_emb(x, pos)
        mask = torch.full((m, m), float("-inf")).triu(1)[None, None]
        x = block(x, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
        if isinstance(x, tuple):
            x = x[0]
        logits = rms(x, w["shared_head.norm.weight"]) @ w["shared_head.head.weight"].T
    return logits[0].numpy()


def is_fp8_weight(name: str, shape) -> bool:
    """The weights DeepSeek-V3/R1 store as FP8 (ARCH.md §2): every projection matrix except the
    embedding, lm_head and the router."""
    return (len(shape) == 2 and name.endswith("proj.weight") or name.endswith("proj_with_mqa.weight"))


def write_fp8_checkpoint(folder: Path, block) -> None:
    """Rewrite the checkpoint in `folder` as DeepSeek publishes R1: projection weights as F8_E4M3
    with f32 `_scale_inv` block scales (scale = block amax / 448, ARCH.md §3), the config with
    its quantization_config. The original f32 weights are discarded: the oracle is run on the
    fp8 weights dequantized by torch (see dequantized_twin)."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    out = {}
    for name, w in tensors.items():
        if not is_fp8_weight(name, w.shape):
            out[name] = w
            continue
        rows, cols = w.shape
        br, bc = -(-rows // block[0]), -(-cols // block[1])
        padded = torch.zeros(br * block[0], bc * block[1])
        padded[:rows, :cols] = w.float()
        blocks = padded.view(br, block[0], bc, block[1])
        scale = (blocks.abs().amax(dim=(1, 3)) / 448.0).clamp(min=1e-12)
        q = (blocks / scale[:, None, :, None]).view_as(padded)[:rows, :cols]
        out[name] = q.to(torch.float8_e4m3fn).contiguous()
        out[name + "_scale_inv"] = scale.contiguous()
    save_file(out, path, metadata={"format": "pt"})
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": list(block)}
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))


def dequantized_twin(folder: Path, twin: Path) -> Path:
    """A copy of an fp8 checkpoint with its weights dequantized to f32 by torch (the oracle's
    own reading of F8_E4M3, independent of r1lite's), loadable by transformers on a CPU."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    block = cfg.pop("quantization_config")["weight_block_size"]
    out = {}
    for name, w in tensors.items():
        if name.endswith("_scale_inv"):
            continue
        if w.dtype == torch.float8_e4m3fn:
            s = tensors[name + "_scale_inv"]
            s = s.repeat_interleave(block[0], 0)[:w.shape[0]].repeat_interleave(block[1], 1)[:, :w.shape[1]]
            w = w.float() * s
        out[name] = w
    twin.mkdir(parents=True, exist_ok=True)
    save_file(out, twin / "model.safetensors", metadata={"format": "pt"})
    (twin / "config.json").write_text(json.dumps(cfg, indent=2))
    return twin


def write_legacy_rope_config(path: Path) -> None:
    """Rewrite transformers 5's rope_parameters as published checkpoints have it: rope_theta and
    rope_scaling at the top level."""
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    path.write_text(json.dumps(cfg, indent=2))


def load_transformers(folder: Path):
    """transformers' model of a checkpoint in float32, its experts (if any) run one by one in
    plain PyTorch (the grouped kernel needs 16-byte-aligned rows)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {}
    if AutoConfig.from_pretrained(folder).model_type.startswith("deepseek"):
        kw["experts_implementation"] = "eager"
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()


def transformers_logits(folder: Path, tokens: np.ndarray) -> np.ndarray:
    """transformers' float32 logits [len(tokens), vocab] for the checkpoint in `folder`."""
    import torch

    model = load_transformers(folder)
    with torch.no_grad():
        out = model(torch.tensor(tokens, dtype=torch.long)[None])
    return out.logits[0].float().numpy()


def transformers_logits_quantized(folder: Path, tokens: np.ndarray, fmt: str) -> np.ndarray:
    """transformers' logits with every weight matrix replaced by its `fmt` round trip, as
    `r1lite convert --quant fmt` stores it (recipes.py: for q4_0 the output head, or the tied
    embedding, at q8_0): an oracle for r1lite's quantized kernels."""
    import torch

    import repo_path  # noqa: F401  (r1lite from this checkout when built in place)
    from r1lite import quant

    def round_trip(w: np.ndarray, as_fmt: str = fmt) -> np.ndarray:  # each row of the last dim, as r1lite stores it
        rows = w.reshape(-1, w.shape[-1])
        q, _, d = quant.encode(rows, as_fmt)
        return quant.dequantize(as_fmt, q, d, rows.shape[1]).reshape(w.shape)

    model = load_transformers(folder)
    cfg = model.config
    head = "model.embed_tokens.weight" if cfg.tie_word_embeddings else "lm_head.weight"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or name.endswith("mlp.gate.weight"):  # norms, biases, f32 router
                continue
            w = p.numpy()
            if name == head and fmt == "q4_0":
                p.copy_(torch.from_numpy(round_trip(w, "q8_0")))
                continue
            if name.endswith("kv_b_proj.weight"):
                # r1lite stores kv_b as W_UK[h]ᵀ and W_UV[h] (formats/mla.py): round those rows
                h, dn = cfg.num_attention_heads, cfg.qk_nope_head_dim
                per_head = w.reshape(h, -1, w.shape[1]).copy()
                per_head[:, :dn] = round_trip(per_head[:, :dn].transpose(0, 2, 1)).transpose(0, 2, 1)
                per_head[:, dn:] = round_trip(per_head[:, dn:])
                p.copy_(torch.from_numpy(per_head.reshape(w.shape)))
            else:
                p.copy_(torch.from_numpy(round_trip(w)))
        out = model(torch.tensor(tokens, dtype=torch.long)[None])
    return out.logits[0].float().numpy()


def transformers_greedy(folder: Path, prompt: np.ndarray, n_new: int) -> np.ndarray:
    """transformers' greedy generate() continuation (n_new tokens, no EOS) of prompt."""
    import torch

    model = load_transformers(folder)
    with torch.no_grad():
        out = model.generate(torch.tensor(prompt, dtype=torch.long)[None], do_sample=False,
                             max_new_tokens=n_new, min_new_tokens=n_new, eos_token_id=None,
                             pad_token_id=0)
    return out[0, len(prompt):].numpy()


def remake_quantized_oracles(name: str, spec: dict, out_root: Path = FIXTURES) -> Path:
    """Only the logits_q8_0 / logits_q4_0 of an existing fixture, recomputed (the rest kept)."""
    out = out_root / name
    oracle_dir = out
    if spec.get("fp8_block"):
        oracle_dir = dequantized_twin(out, out_root / (name + ".oracle-twin"))
    oracle = dict(np.load(out / "oracle.npz"))
    for fmt in ("q8_0", "q4_0"):
        oracle[f"logits_{fmt}"] = transformers_logits_quantized(oracle_dir, oracle["tokens"], fmt)
    if oracle_dir != out:
        shutil.rmtree(oracle_dir)
    np.savez_compressed(out / "oracle.npz", **oracle)
    return out


def make_fixture(name: str, spec: dict, out_root: Path = FIXTURES, seed: int = 0) -> Path:
    out = out_root / name
    build_checkpoint(spec, out, seed)
    oracle_dir = out
    if spec.get("fp8_block"):
        oracle_dir = dequantized_twin(out, out_root / (name + ".oracle-twin"))
    tokens = np.random.default_rng(seed + 1).integers(0, spec["vocab"], SEQ_LEN, dtype=np.int64)
    logits = transformers_logits(oracle_dir, tokens)
    prompt = tokens[:GREEDY_PROMPT]
    greedy = transformers_greedy(oracle_dir, prompt, GREEDY_NEW)
    quantized = {f"logits_{fmt}": transformers_logits_quantized(oracle_dir, tokens, fmt)
                 for fmt in ("q8_0", "q4_0")}
    if spec.get("mtp"):
        quantized["mtp_logits"] = mtp_reference(oracle_dir, tokens)
    if oracle_dir != out:
        shutil.rmtree(oracle_dir)
    np.savez_compressed(out / "oracle.npz", tokens=tokens.astype(np.int32), logits=logits,
                        greedy_prompt=prompt.astype(np.int32), greedy_tokens=greedy.astype(np.int32),
                        **quantized)
    return out


def main() -> int:
    """All fixtures, or those named on the command line (seeds stay those of their places)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    quantized_only = "--quantized-oracles" in sys.argv  # keep the checkpoints, redo those logits
    only = set(sys.argv[1:]) - {"--quantized-oracles"}
    for i, (name, spec) in enumerate(SPECS.items()):
        if only and name not in only:
            continue
        out = remake_quantized_oracles(name, spec) if quantized_only else make_fixture(name, spec, seed=i)
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"{name}: {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
