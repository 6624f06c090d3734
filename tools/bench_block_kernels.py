#!/usr/bin/env python3
"""One matmul kernel per format, one thread (`_core.matmul`), random blocks: decode reads a
matrix too large for the caches (GB/s of weights), prefill multiplies a cache-sized matrix by
many tokens (GMAC/s). Best of --repeats runs; the machine should be otherwise idle.

    python tools/bench_block_kernels.py                      # every block format + planar q8_0/q4_0
    python tools/bench_block_kernels.py q4_k q6_k --isa avx2 --mode decode
    python tools/bench_block_kernels.py q4_1 q8_0 --mode small   # 1-9 tokens: speculative passes

--mode small times the decode matrix with 1 to --small-max tokens (a speculative verification's
batch) and prints each as a multiple of the 1-token time: 1.0 would mean the extra tokens are
free, n that each token reads and computes as if alone.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from repo_path import ROOT  # noqa: F401,E402  (r1lite from this checkout when built in place)

from r1lite import _core, quant  # noqa: E402
from r1lite.formats.blocks import random_blocks  # noqa: E402


def best_seconds(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def weights(fmt: str, rows: int, cols: int, rng) -> tuple:
    """(array, scales or None) of a [rows, cols] matrix in fmt."""
    if quant.TABLE[fmt]["layout"] == "planar":
        q, _, d = quant.encode((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32), fmt)
        return q, d
    return random_blocks(fmt, rows * cols // quant.TABLE[fmt]["block"], rng).reshape(rows, -1), None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("formats", nargs="*", default=list(quant.BLOCK_FORMATS) + ["q8_0", "q4_0"])
    ap.add_argument("--isa", default=_core.active_isa())
    ap.add_argument("--mode", choices=["decode", "prefill", "both", "small"], default="both")
    ap.add_argument("--cols", type=int, default=1536)
    ap.add_argument("--decode-rows", type=int, default=65536, help="a matrix larger than the L3")
    ap.add_argument("--prefill-rows", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--small-max", type=int, default=9, help="--mode small: up to this many tokens")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for fmt in args.formats:
        out = [f"{fmt:10}"]
        if args.mode in ("decode", "both"):
            w, d = weights(fmt, args.decode_rows, args.cols, rng)
            x = rng.standard_normal((1, args.cols)).astype(np.float32)
            s = best_seconds(lambda: _core.matmul(x, w, fmt, args.isa, d), args.repeats)
            out.append(f"decode {(w.nbytes + (0 if d is None else d.nbytes)) / s / 1e9:6.1f} GB/s")
        if args.mode == "small":
            w, d = weights(fmt, args.decode_rows, args.cols, rng)
            times = []
            for n in range(1, args.small_max + 1):
                x = rng.standard_normal((n, args.cols)).astype(np.float32)
                times.append(best_seconds(lambda: _core.matmul(x, w, fmt, args.isa, d), args.repeats))
            out.append("ms (in 1-token times): "
                       + " ".join(f"{n}:{t * 1e3:.2f} ({t / times[0]:.2f})" for n, t in enumerate(times, 1)))
        if args.mode in ("prefill", "both"):
            w, d = weights(fmt, args.prefill_rows, args.cols, rng)
            x = rng.standard_normal((args.tokens, args.cols)).astype(np.float32)
            s = best_seconds(lambda: _core.matmul(x, w, fmt, args.isa, d), args.repeats)
            out.append(f"prefill {args.prefill_rows * args.cols * args.tokens / s / 1e9:6.1f} GMAC/s")
        print("  ".join(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
