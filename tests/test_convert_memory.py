"""Converting a sharded FP8 DeepSeek checkpoint works tensor by tensor: peak memory grows by about
one tensor, not by the checkpoint (ARCH.md §2-3; the real R1 is 163 shards, 690 GB)."""

import json
import subprocess
import sys

import numpy as np

import r1lite
from conftest import write_safetensors

HIDDEN, EXPERTS, MOE_INTER, LAYERS, VOCAB = 512, 48, 384, 5, 1024
SHARD_BYTES = 24 << 20


def _fp8_bytes(rng, shape):
    """Random E4M3 bytes without NaN (0x7F / 0xFF), magnitudes up to 2."""
    return (rng.integers(0, 0x41, shape, dtype=np.uint8) | (rng.integers(0, 2, shape, dtype=np.uint8) << 7))


def build_fp8_checkpoint(folder, seed=0):
    """A random DeepSeek-V3-shaped checkpoint stored as R1 is: FP8 projections with 128x128 block
    scales, bf16 embeddings and norms, f32 router; split into shards of about SHARD_BYTES."""
    rng = np.random.default_rng(seed)
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
           "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": 1024,
           "moe_intermediate_size": MOE_INTER, "num_hidden_layers": LAYERS,
           "num_attention_heads": 4, "num_key_value_heads": 4, "n_shared_experts": 1,
           "n_routed_experts": EXPERTS, "routed_scaling_factor": 2.5, "kv_lora_rank": 128,
           "q_lora_rank": 192, "qk_rope_head_dim": 32, "v_head_dim": 64, "qk_nope_head_dim": 64,
           "n_group": 4, "topk_group": 2, "num_experts_per_tok": 4, "first_k_dense_replace": 1,
           "norm_topk_prob": True, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
           "rope_theta": 10000, "tie_word_embeddings": False,
           "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                   "weight_block_size": [128, 128]}}
    (folder / "config.json").write_text(json.dumps(cfg))

    def fp8_weight(out, name, rows, cols):
        out[name] = ("F8_E4M3", _fp8_bytes(rng, (rows, cols)))
        scales = rng.uniform(0.01, 0.05, (-(-rows // 128), -(-cols // 128))).astype(np.float32)
        out[name + "_scale_inv"] = ("F32", scales)

    def bf16(shape, value=None):
        x = np.full(shape, value, np.float32) if value is not None else rng.standard_normal(shape).astype(np.float32)
        return ("BF16", (x.view(np.uint32) >> 16).astype(np.uint16))

    tensors = {"model.embed_tokens.weight": bf16((VOCAB, HIDDEN)), "model.norm.weight": bf16((HIDDEN,), 1.0),
               "lm_head.weight": bf16((VOCAB, HIDDEN))}
    h, qk = 4, 64 + 32
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        tensors[p + "input_layernorm.weight"] = bf16((HIDDEN,), 1.0)
        tensors[p + "post_attention_layernorm.weight"] = bf16((HIDDEN,), 1.0)
        tensors[p + "self_attn.q_a_layernorm.weight"] = bf16((192,), 1.0)
        tensors[p + "self_attn.kv_a_layernorm.weight"] = bf16((128,), 1.0)
        fp8_weight(tensors, p + "self_attn.q_a_proj.weight", 192, HIDDEN)
        fp8_weight(tensors, p + "self_attn.q_b_proj.weight", h * qk, 192)
        fp8_weight(tensors, p + "self_attn.kv_a_proj_with_mqa.weight", 128 + 32, HIDDEN)
        fp8_weight(tensors, p + "self_attn.kv_b_proj.weight", h * (64 + 64), 128)
        fp8_weight(tensors, p + "self_attn.o_proj.weight", HIDDEN, h * 64)
        mlps = ([p + "mlp."] if layer == 0 else
                [p + f"mlp.experts.{e}." for e in range(EXPERTS)] + [p + "mlp.shared_experts."])
        width = 1024 if layer == 0 else MOE_INTER
        for m in mlps:
            fp8_weight(tensors, m + "gate_proj.weight", width, HIDDEN)
            fp8_weight(tensors, m + "up_proj.weight", width, HIDDEN)
            fp8_weight(tensors, m + "down_proj.weight", HIDDEN, width)
        if layer > 0:
            tensors[p + "mlp.gate.weight"] = ("F32", rng.standard_normal((EXPERTS, HIDDEN)).astype(np.float32) * 0.05)
            tensors[p + "mlp.gate.e_score_correction_bias"] = ("F32", np.zeros(EXPERTS, np.float32))

    shards, current, size = [], {}, 0
    for name, entry in tensors.items():
        current[name] = entry
        size += entry[1].nbytes
        if size >= SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):06d}.safetensors"
        write_safetensors(folder / file, shard)
        weight_map.update({name: file for name in shard})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return sum(t[1].nbytes for t in tensors.values()), len(shards)


# VmRSS before and VmHWM (peak resident set of this process image) after converting, in KiB.
# (getrusage's ru_maxrss would carry the forking parent's peak over exec.)
PEAK_SCRIPT = """
import sys
import r1lite
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
base = status("VmRSS")
r1lite.convert(sys.argv[1], sys.argv[2], "q8_0", progress=False)
print(base, status("VmHWM"))
"""


def test_converting_a_sharded_fp8_checkpoint_stays_bounded(tmp_path):
    src = tmp_path / "fp8"
    src.mkdir()
    total, n_shards = build_fp8_checkpoint(src)
    assert n_shards >= 4 and total > 100 << 20
    out = tmp_path / "model-q8_0.safetensors"
    run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(src), str(out)],
                         capture_output=True, text=True, check=True)
    base_kib, peak_kib = map(int, run.stdout.split())
    growth = (peak_kib - base_kib) * 1024
    # The largest tensor dequantized to f32 is 2 MB; allow one shard on top for slack. The
    # checkpoint is 4x larger than that, and 16x larger dequantized.
    assert growth < SHARD_BYTES + (16 << 20), f"peak grew by {growth / 2**20:.0f} MiB"
    model = r1lite.load(out, threads=2)
    assert model.config["num_experts"] == EXPERTS
    logits = model.logits([1, 2, 3])
    assert np.isfinite(logits).all()
