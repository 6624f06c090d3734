#!/usr/bin/env python3
"""Bytes per token, memory and the decode speed they imply for a DeepSeek MoE model (default: the
real R1, tools/bench_configs/deepseek-r1.json), from r1lite's own tensor list for the config:

    python tools/r1_arithmetic.py [--config CONFIG] [--bandwidth GB/s ...]

Decode reads every matrix once per token except the routed experts, of which each MoE layer reads
experts_per_token, plus the whole latent cache (f32 in r1lite: (kv_lora_rank + rope dims) x 4
bytes per layer per position). The bound tok/s = bandwidth / bytes read per token.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from repo_path import ROOT  # noqa: E402  (r1lite from this checkout when built in place)

from r1lite.config import normalize_hf_config  # noqa: E402
from r1lite.formats.tensors import expected_tensors  # noqa: E402

BYTES_PER_PARAM = {"q4_0": 18 / 32, "q8_0": 34 / 32, "bf16": 2.0}
CACHE_BYTES_PER_VALUE = 4  # r1lite's cache is f32


def weights(cfg: dict) -> dict:
    """Parameter counts: total, read per decode token (matrix / f32 kinds)."""
    k = cfg.get("experts_per_token", 0)
    total = {"matrix": 0, "f32": 0}
    active = {"matrix": 0, "f32": 0}
    for name, (shape, kind) in expected_tensors(cfg).items():
        n = int(np.prod(shape))
        total[kind] += n
        if name == "tok_embd":
            continue  # one row per token
        if ".experts." in name:
            n = n * k / cfg["num_experts"]  # the layer's experts are all the same size
        active[kind] += n
    return {"total": total, "active": active}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "tools" / "bench_configs" / "deepseek-r1.json")
    ap.add_argument("--bandwidth", type=float, nargs="*", default=[31.0, 90.0, 307.0],
                    help="memory read bandwidths (GB/s) to turn bytes into tok/s")
    ap.add_argument("--contexts", type=int, nargs="*", default=[4096, 131072])
    args = ap.parse_args(argv)
    cfg = normalize_hf_config(json.loads(args.config.read_text()), str(args.config))
    w = weights(cfg)
    cache_per_pos = cfg["num_layers"] * (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]) * CACHE_BYTES_PER_VALUE
    print(f"{args.config.name}: {sum(w['total'].values()) / 1e9:.1f} B parameters, "
          f"{sum(w['active'].values()) / 1e9:.1f} B read per decode token; "
          f"latent cache {cache_per_pos / 1024:.1f} KiB per position")
    print()
    print("| format | weights in memory | read per token (weights) | + cache at "
          + " | + cache at ".join(f"{c // 1024}K" for c in args.contexts) + " | memory at "
          + " | memory at ".join(f"{c // 1024}K" for c in args.contexts) + " | decode tok/s bound at "
          + ", ".join(f"{b:g}" for b in args.bandwidth) + " GB/s (4K) |")
    print("|" + "---|" * (3 + 2 * len(args.contexts) + 1))
    for fmt, bpp in BYTES_PER_PARAM.items():
        total = w["total"]["matrix"] * bpp + w["total"]["f32"] * 4
        read = w["active"]["matrix"] * bpp + w["active"]["f32"] * 4
        cells = [fmt, f"{total / 1e9:.0f} GB", f"{read / 1e9:.1f} GB"]
        cells += [f"{(read + c * cache_per_pos) / 1e9:.1f} GB" for c in args.contexts]
        cells += [f"{(total + c * cache_per_pos) / 1e9:.0f} GB" for c in args.contexts]
        at4k = read + args.contexts[0] * cache_per_pos
        cells.append(", ".join(f"{b * 1e9 / at4k:.1f}" for b in args.bandwidth))
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
