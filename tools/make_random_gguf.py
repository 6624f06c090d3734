#!/usr/bin/env python3
"""A GGUF of a real model's shape whose blocks are random (valid scales, random quants), in a
recipe's formats (r1lite.recipes: llama.cpp's mixes), written in seconds without quantizing
anything: for load-time and memory measurements, where values do not matter.

    python tools/make_random_gguf.py OUT.gguf [--config tests/assets/.../config-7b.json] [--quant q4_k_m]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gguf_write import ASSETS, write_gguf  # noqa: E402  (puts this checkout's r1lite first)

from r1lite.config import normalize_hf_config  # noqa: E402
from r1lite.formats.blocks import random_blocks  # noqa: E402
from r1lite.formats.tensors import expected_tensors  # noqa: E402
from r1lite.quant import TABLE  # noqa: E402
from r1lite.recipes import gguf_tensor_formats  # noqa: E402


def random_gguf(out: Path, cfg: dict, quant: str = "q4_k_m", seed: int = 0, raw: dict | None = None) -> Path:
    """raw: the Hugging Face config, needed for MLA models (deepseek2 metadata)."""
    rng = np.random.default_rng(seed)
    formats = gguf_tensor_formats(cfg, quant)
    tensors = {}
    for name, (shape, kind) in expected_tensors(cfg).items():
        fmt = formats[name]
        if name.endswith(".router"):  # random, so that tokens pick different experts
            tensors[name] = rng.standard_normal(shape).astype(np.float32)
            continue
        if kind == "f32" or TABLE[fmt]["layout"] != "blocks":
            tensors[name] = np.ones(shape, np.float32) if kind == "f32" else \
                (rng.standard_normal(shape) * 0.02).astype(np.float16)
            continue
        rows, cols = shape
        blocks = random_blocks(fmt, rows * cols // TABLE[fmt]["block"], rng, scale=0.002)
        tensors[name] = (blocks.reshape(rows, -1), fmt)
    write_gguf(out, cfg, tensors, raw)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", type=Path, default=ASSETS / "config-7b.json")
    ap.add_argument("--quant", default="q4_k_m")
    args = ap.parse_args()
    raw = json.loads(args.config.read_text())
    random_gguf(args.out, normalize_hf_config(raw, str(args.config)), args.quant, raw=raw)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e9:.2f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
