#!/usr/bin/env python3
"""Writes tests/fixtures/iquant_blocks.npz: a few i-quant blocks written by llama.cpp's own
quantizer (ggml_quantize_chunk in libggml-base, what llama-quantize runs), with an importance
vector as llama-imatrix would give it, for tests/test_iquants.py to decode. A few KB: 4 rows of
512 values per format, from heavy-tailed weights.

    LD_LIBRARY_PATH=~/.cache/llama.cpp-peer/build/bin python tools/make_iquant_fixtures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from llamacpp_peer import ggml_base

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "iquant_blocks.npz"
# r1lite name -> (GGML type id, block bytes)
FORMATS = {"iq2_xxs": (16, 66), "iq2_xs": (17, 74), "iq2_s": (22, 82), "iq3_xxs": (18, 98), "iq3_s": (21, 110),
           "iq1_s": (19, 50), "iq1_m": (29, 56)}
ROWS, COLS = 4, 512


def main() -> int:
    rng = np.random.default_rng(20)
    w = (rng.standard_t(3, (ROWS, COLS)) * 0.02).astype(np.float32)
    w[0, :256] = 0.0  # an all-zero super-block
    importance = (rng.standard_normal((64, COLS)) ** 2).mean(axis=0).astype(np.float32) + 0.1
    lib = ggml_base()
    if lib is None:
        sys.exit("no llama.cpp build: set LLAMACPP_HOME")
    out = {"weights": w, "importance": importance}
    for name, (gtype, block_bytes) in FORMATS.items():
        lib.ggml_quantize_init(gtype)
        blocks = np.zeros((ROWS, COLS // 256 * block_bytes), np.uint8)
        lib.ggml_quantize_chunk(gtype, w.ctypes.data, blocks.ctypes.data, 0, ROWS, COLS, importance.ctypes.data)
        out[name] = blocks
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
