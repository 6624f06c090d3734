#!/usr/bin/env python3
"""A short run of each attention kind, small enough for valgrind (ROBUSTNESS.md):

    PYTHONMALLOC=malloc valgrind --error-exitcode=9 --leak-check=no python tools/valgrind_generation.py

Loads a Qwen2 fixture and a DeepSeek MoE fixture (MLA, FP8 import), runs logits through a
chunked prefill, a few decode steps, a q4_0 conversion of each and a batched step of two
sequences."""

import sys
import tempfile
from pathlib import Path

import numpy as np

from repo_path import ROOT  # noqa: E402  (r1lite from this checkout when built in place)

import r1lite  # noqa: E402


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    for name in ("qwen2_f32", "deepseek_v3_fp8"):
        folder = ROOT / "tests" / "fixtures" / name
        tokens = np.load(folder / "oracle.npz")["tokens"][:12]
        model = r1lite.load(folder, threads=2, context=64)
        model.logits(tokens, chunk=5)
        out = model.generate(tokens[:4].tolist(), max_new_tokens=4, temperature=0.7, seed=1)
        q4 = r1lite.load(r1lite.convert(folder, tmp / f"{name}.safetensors", "q4_0", progress=False),
                         threads=2, context=64)
        q4.logits(tokens[:6])
        core = q4._core
        a, b = core.open_sequence(), core.open_sequence()
        core.forward_batch([(a, tokens[:3]), (b, tokens[3:8])])
        core.forward_batch([(b, tokens[8:9]), (a, tokens[9:10])])
        print(name, "ok", out.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
