#!/usr/bin/env python3
"""Write one random-weight model of a real shape in the files both runtimes read, for the
side-by-side benchmark (tools/bench_compare.py):

    python tools/make_bench_models.py OUT_DIR [--config CONFIG]

OUT_DIR/hf/            Hugging Face folder, f16 weights, with the R1-Distill-Qwen tokenizer
OUT_DIR/model-f16.gguf the same weights as GGUF (llama.cpp names, tokenizer in the metadata)
OUT_DIR/r1-{q8_0,q4_0}.safetensors   r1lite convert of hf/
The GGUF is quantized to q8_0 / q4_0 by llama.cpp itself (tools/bench_llamacpp.py --quantize),
from the same f16 values, so both runtimes round the same weights the same way (ggml's rules).
Values repeat a random pool (a few MB) to build quickly: content does not change the speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from repo_path import ROOT  # noqa: E402  (r1lite from this checkout when built in place)
ASSETS = ROOT / "tests" / "assets" / "deepseek-r1-distill-qwen"

from r1lite.config import normalize_hf_config  # noqa: E402
from r1lite.formats.names import gguf_name, hf_name  # noqa: E402
from r1lite.formats.tensors import expected_tensors  # noqa: E402


def random_tensors(cfg: dict) -> dict:
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(1 << 22) * 0.02).astype(np.float16)
    out = {}
    for name, (shape, kind) in expected_tensors(cfg).items():
        if kind == "f32":
            out[name] = np.ones(shape, np.float32)
            continue
        arr = np.empty(shape, np.float16).reshape(-1)
        for i in range(0, arr.size, pool.size):
            n = min(pool.size, arr.size - i)
            arr[i:i + n] = pool[:n]
        out[name] = arr.reshape(shape)
    return out


def write_hf(folder: Path, raw_cfg: dict, tensors: dict) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(raw_cfg, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copy(ASSETS / name, folder / name)
    save_file({hf_name(k): v for k, v in tensors.items()}, str(folder / "model.safetensors"))


def add_model_header(w, cfg: dict) -> None:
    """The GGUF metadata of a dense model's shape (a gguf.GGUFWriter, r1lite's config)."""
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_heads"])
    w.add_head_count_kv(cfg["num_kv_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["norm_eps"])


def write_gguf(path: Path, cfg: dict, tensors: dict) -> None:
    """A qwen2 GGUF of `cfg`'s shape with the R1-Distill tokenizer; tensors maps r1lite names to
    arrays of values, or to (block bytes [.., rows, row bytes], r1lite block format)."""
    import gguf

    from r1lite.quant import TABLE

    tok = json.loads((ASSETS / "tokenizer.json").read_text())
    vocab = {t: i for t, i in tok["model"]["vocab"].items()}
    special = {}
    for t in tok["added_tokens"]:
        vocab[t["content"]] = t["id"]
        special[t["id"]] = t["special"]
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(cfg["vocab_size"]):
        if i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if special.get(i) else
                         gguf.TokenType.USER_DEFINED if i in special else gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("r1lite bench model")
    add_model_header(w, cfg)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("deepseek-r1-qwen")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(151646)
    w.add_eos_token_id(151643)
    for name, arr in tensors.items():
        if isinstance(arr, tuple):
            blocks, fmt = arr
            w.add_tensor(gguf_name(name), blocks,
                         raw_dtype=gguf.GGMLQuantizationType[TABLE[fmt]["gguf_name"]])
        else:
            w.add_tensor(gguf_name(name), arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", type=Path, default=ASSETS / "config-1.5b.json")
    args = ap.parse_args()
    import r1lite

    raw = json.loads(args.config.read_text())
    cfg = normalize_hf_config(raw, str(args.config))
    tensors = random_tensors(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    write_hf(args.out / "hf", raw, tensors)
    print("wrote", args.out / "hf")
    write_gguf(args.out / "model-f16.gguf", cfg, tensors)
    print("wrote", args.out / "model-f16.gguf")
    del tensors
    for q in ("q8_0", "q4_0"):
        r1lite.convert(args.out / "hf", args.out / f"r1-{q}.safetensors", q)
        print("wrote", args.out / f"r1-{q}.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
