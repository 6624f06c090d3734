#!/usr/bin/env python3
"""Decode time per token after 512 .. N cached positions, on random weights of a real shape cut
to a few layers (so that filling 16K positions takes a minute, not twenty): what attention at
depth costs per layer, apart from the weights.

    python tools/bench_depth.py --layers 2 --depths 512,4096,8192,16384
    python tools/bench_depth.py --config tools/bench_configs/dense-11264-mla.json --layers 2 \\
        --depths 1024,4096,8192

Prints, per depth, decode ms/token (mean of --steps tokens) and the prefill time so far (chunks
of 512, as generation feeds a prompt).
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--layers", type=int, default=2, help="keep this many layers")
    ap.add_argument("--format", default="q8_0", choices=["q8_0", "q4_0", "bf16", "f16", "f32"])
    ap.add_argument("--kv-cache", default="f16", choices=["f16", "bf16", "q8_0", "f32"])
    ap.add_argument("--depths", default="512,4096,8192,16384")
    ap.add_argument("--steps", type=int, default=16, help="decoded tokens per depth")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    depths = sorted(int(d) for d in args.depths.split(","))
    hf = json.loads(Path(args.config).read_text())
    hf["num_hidden_layers"] = args.layers
    cfg = normalize_hf_config(hf, args.config)
    cfg["context"] = depths[-1] + len(depths) * args.steps
    cfg["kv_cache"] = args.kv_cache
    core = _core.Model(cfg, random_weights(cfg, args.format), args.threads)
    tokens = np.random.default_rng(0).integers(0, min(1000, cfg["vocab_size"]), cfg["context"]).astype(np.int32)
    fed, prefill_s = 0, 0.0
    for depth in depths:
        t0 = time.perf_counter()
        while fed < depth:
            k = min(512, depth - fed)
            core.forward(tokens[fed:fed + k], False)
            fed += k
        prefill_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.steps):
            core.forward(tokens[fed:fed + 1], False)
            fed += 1
        ms = (time.perf_counter() - t0) / args.steps * 1e3
        print(f"depth {depth}: decode {ms:.2f} ms/token; prefill so far {prefill_s:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
