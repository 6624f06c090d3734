#!/usr/bin/env python3
"""What verifying k speculated tokens costs on a model of a real shape (random weights, built in
memory; no file needed): one forward pass of k + 1 tokens against one decode step, at the same
depth (the cache is rolled back after each pass). On a mixture-of-experts model the k + 1 tokens
pick up to (k + 1) x top-k experts per layer, so a pass reads more than one step does.

    python tools/bench_verify.py --config tools/bench_configs/moe-64x1408-top6.json --ks 1,2,4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import DEFAULT_CONFIG, random_weights
from r1lite import _core
from r1lite.config import normalize_hf_config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="a Hugging Face config.json")
    ap.add_argument("--format", default="q8_0", choices=["q8_0", "q4_0", "bf16"])
    ap.add_argument("--ks", default="1,2,4,8", help="speculated tokens per pass")
    ap.add_argument("--depth", type=int, default=256, help="cached positions before the passes")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    cfg = normalize_hf_config(json.loads(Path(args.config).read_text()), args.config)
    cfg["context"] = args.depth + max(ks) + 2
    core = _core.Model(cfg, random_weights(cfg, args.format), args.threads)
    rng = np.random.default_rng(0)
    core.forward(rng.integers(0, cfg["vocab_size"], args.depth).astype(np.int32), False)

    def pass_ms(n: int) -> float:
        times = []
        for _ in range(args.repeats):
            ids = rng.integers(0, cfg["vocab_size"], n).astype(np.int32)
            t0 = time.perf_counter()
            core.forward(ids, True)
            times.append(time.perf_counter() - t0)
            core.truncate(args.depth)
        return statistics.median(times) * 1e3

    step = pass_ms(1)
    print(f"{Path(args.config).name} {args.format}, {args.threads} threads, depth {args.depth}: "
          f"decode step {step:.1f} ms")
    for k in ks:
        ms = pass_ms(k + 1)
        print(f"k={k}: pass of {k + 1} tokens {ms:.1f} ms = {ms / step:.2f} decode steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
