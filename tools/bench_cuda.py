#!/usr/bin/env python3
"""CUDA speed table: random-weight models of real shapes on a GPU, prefill 512 and 4096 tokens
and decode 128 (greedy, argmax on the device), decode's achieved bytes/s against the device's
measured copy bandwidth. Part of tools/device_check.sh; prints a Markdown table for
BENCHMARKS.md.

    python tools/bench_cuda.py                    # the default rows
    python tools/bench_cuda.py --rows 1.5b:q8_0 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repo_path  # noqa: E402,F401  (this checkout's r1lite when built in place)
from bench import random_weights  # noqa: E402
from r1lite import _core  # noqa: E402
from r1lite.benchmark import decode_bytes_per_token, run  # noqa: E402
from r1lite.config import normalize_hf_config  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "bench_configs"
SHAPES = {"1.5b": "r1-distill-qwen-1.5b.json", "7b": "r1-distill-qwen-7b.json",
          "moe": "moe-64x1408-top6.json"}
DEFAULT_ROWS = ["1.5b:bf16", "1.5b:q8_0", "1.5b:q4_0", "7b:q8_0", "moe:q8_0"]


def prefill_rate(core, vocab: int, n: int) -> float:
    tokens = np.random.default_rng(2).integers(0, vocab, n).astype(np.int32)
    core.reset()
    t = time.perf_counter()
    core.forward(tokens, False)
    rate = n / (time.perf_counter() - t)
    core.reset()
    return rate


def bench_row(row: str, repeats: int, long_prefill: int) -> dict:
    shape, fmt = row.split(":")
    cfg = normalize_hf_config(json.loads((CONFIGS / SHAPES[shape]).read_text()), SHAPES[shape])
    cfg["context"] = long_prefill + 256
    t0 = time.perf_counter()
    tensors = random_weights(cfg, fmt)
    core = _core.DeviceModel(cfg, tensors, 0)
    ready = time.perf_counter() - t0
    per_token = decode_bytes_per_token(tensors, cfg)
    del tensors  # the device holds its own copy
    rates = run(core, cfg["vocab_size"], 512, 128, repeats)
    long_rate = prefill_rate(core, cfg["vocab_size"], long_prefill)
    core.set_graphs(False)
    plain = run(core, cfg["vocab_size"], 8, 128, repeats)["decode_tok_s"]
    core.set_graphs(True)
    bandwidth = core.copy_bandwidth(1 << 30, 10)
    return dict(row=row, device=core.device_name, read_gb=per_token / 1e9, ready_s=ready,
                prefill=rates["prefill_tok_s"], prefill_long=long_rate, decode=rates["decode_tok_s"],
                decode_plain=plain, bandwidth=bandwidth,
                share=rates["decode_tok_s"] * per_token / bandwidth)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, help="shape:format pairs")
    ap.add_argument("--repeats", type=int, default=3, help="rounds per row (medians)")
    ap.add_argument("--long-prefill", type=int, default=4096)
    args = ap.parse_args(argv)
    reason = _core.cuda_unavailable_reason()
    if reason:
        print(f"error: no CUDA device: {reason}", file=sys.stderr)
        return 1
    print("| model | GB read / token | prefill 512 tok/s | prefill "
          f"{args.long_prefill} tok/s | decode tok/s (graph) | decode tok/s (no graph) | "
          "decode GB/s | share of copy bandwidth |")
    print("|---|---|---|---|---|---|---|---|")
    device = "?"
    for row in args.rows:
        try:
            r = bench_row(row, args.repeats, args.long_prefill)
        except Exception as e:  # noqa: BLE001 - report the row and go on with the others
            print(f"| {row} | failed: {type(e).__name__}: {e} |||||||", flush=True)
            continue
        device = r["device"]
        print(f"| {row} | {r['read_gb']:.2f} | {r['prefill']:.0f} | {r['prefill_long']:.0f} | "
              f"{r['decode']:.1f} | {r['decode_plain']:.1f} | {r['decode'] * r['read_gb']:.0f} | "
              f"{100 * r['share']:.0f}% of {r['bandwidth'] / 1e9:.0f} GB/s |", flush=True)
    print(f"device: {device}; {args.repeats} rounds per row, medians")
    return 0


if __name__ == "__main__":
    sys.exit(main())
