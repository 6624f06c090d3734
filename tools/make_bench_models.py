#!/usr/bin/env python3
"""Write one random-weight model of a real shape in the files both runtimes read, for the
side-by-side benchmark (tools/bench_compare.py):

    python tools/make_bench_models.py OUT_DIR [--config CONFIG]

OUT_DIR/hf/            Hugging Face folder, f16 weights, with the R1-Distill-Qwen tokenizer
OUT_DIR/model-f16.gguf the same weights as GGUF (llama.cpp names, tokenizer in the metadata;
                       qwen2, or deepseek2 for MLA configs such as tools/bench_configs/moe-*.json)
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

from gguf_write import ASSETS, write_gguf  # noqa: E402  (puts this checkout's r1lite first)

from r1lite.config import normalize_hf_config  # noqa: E402
from r1lite.formats.names import hf_name  # noqa: E402
from r1lite.formats.tensors import expected_tensors  # noqa: E402


def random_tensors(cfg: dict) -> dict:
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(1 << 22) * 0.02).astype(np.float16)
    out = {}
    for name, (shape, kind) in expected_tensors(cfg).items():
        if name.endswith(".router"):  # random, so that tokens pick different experts
            out[name] = rng.standard_normal(shape).astype(np.float32)
            continue
        if kind == "f32":
            out[name] = np.ones(shape, np.float32)
            continue
        size = int(np.prod(shape))
        if size <= pool.size:  # a view: the 64-expert MoE's experts take no memory of their own
            out[name] = pool[:size].reshape(shape)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", type=Path, default=ASSETS / "config-1.5b.json")
    ap.add_argument("--gguf-only", action="store_true",
                    help="write only model-f16.gguf (MoE shapes: the HF folder would double the disk used)")
    args = ap.parse_args()
    import r1lite

    raw = json.loads(args.config.read_text())
    cfg = normalize_hf_config(raw, str(args.config))
    tensors = random_tensors(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    write_gguf(args.out / "model-f16.gguf", cfg, tensors, raw)
    print("wrote", args.out / "model-f16.gguf")
    if args.gguf_only:
        return 0
    write_hf(args.out / "hf", raw, tensors)
    print("wrote", args.out / "hf")
    del tensors
    for q in ("q8_0", "q4_0"):
        r1lite.convert(args.out / "hf", args.out / f"r1-{q}.safetensors", q)
        print("wrote", args.out / f"r1-{q}.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
