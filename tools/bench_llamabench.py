#!/usr/bin/env python3
"""r1lite against llama.cpp's own llama-bench (a native CMake build, -DGGML_NATIVE=ON) on the same
weights, runs interleaved, medians and ratios:

    python tools/make_bench_models.py /tmp/bench        # HF folder, f16 GGUF, r1lite q8_0 / q4_0
    llama-quantize --pure /tmp/bench/model-f16.gguf /tmp/bench/llama-q8_0.gguf Q8_0   (and Q4_0)
    python tools/bench_llamabench.py /tmp/bench --llama-bin DIR --rounds 3
    python tools/bench_llamabench.py /tmp/bench --llama-bin DIR --depth 4096 --decode 32 \\
        --kv-cache f16 q8_0 --formats q8_0

With --gguf, r1lite runs llama.cpp's own file (llama-FORMAT.gguf, computed on in its blocks), so
both read the same bytes:

    llama-quantize /tmp/bench/model-f16.gguf /tmp/bench/llama-q4_k_m.gguf Q4_K_M   (Q6_K, Q8_0)
    python tools/bench_llamabench.py /tmp/bench --llama-bin DIR --gguf --formats q4_k_m q6_k q8_0

DIR holds llama-bench and its libraries (LD_LIBRARY_PATH is set to it). Each round runs, per
format and cache type, `r1lite bench` and then `llama-bench -r 1` with the same prompt, decode and
depth (llama-bench -p PREFILL -n DECODE -d DEPTH -t THREADS; the cache types map to -ctk/-ctv).
With --depth, prefill is not measured (-p 0), as the issue's figures ask. Without it both decode
from an empty cache, as llama-bench's tg test does (r1lite bench runs twice: its prefill figure
from one run, its decode figure from a one-token prompt; before 2026-12-02 r1lite decoded after
the 512-token prompt, which cost the MLA models a few percent). Prints a Markdown table for
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench_compare import run as run_r1lite  # runs a bench command, parses its figures


def r1lite_bench(model: Path, prefill: int, decode: int, depth: int, threads: int, kv: str) -> dict:
    def bench(p: int, d: int) -> dict:
        return run_r1lite([sys.executable, "-m", "r1lite", "bench", str(model), "--prefill", str(p),
                           "--decode", str(d), "--depth", str(depth), "-t", str(threads), "--kv-cache", kv])
    if depth or prefill <= 1:
        return bench(prefill, decode)
    # llama-bench's tg test decodes from an empty cache, and `r1lite bench` after its prompt: the
    # prefill figure from one run, the decode figure from another with a one-token prompt
    return {**bench(1, decode), "prefill": bench(prefill, 1)["prefill"]}


def llama_bench(bin_dir: Path, model: Path, prefill: int, decode: int, depth: int, threads: int,
                kv: str, extra: list[str]) -> dict:
    cmd = [str(bin_dir / "llama-bench"), "-m", str(model), "-p", str(prefill), "-n", str(decode),
           "-t", str(threads), "-r", "1", "-o", "json", "-ctk", kv, "-ctv", kv, *extra]
    if depth:
        cmd += ["-d", str(depth)]
    if kv != "f16":
        cmd += ["-fa", "1"]  # llama.cpp quantizes the V cache only with flash attention
    env = dict(os.environ, LD_LIBRARY_PATH=str(bin_dir))
    rows = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout)
    res = {}
    for row in rows:
        key = "prefill" if row["n_prompt"] and not row["n_gen"] else "decode"
        res[key] = float(row["avg_ts"])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--llama-bin", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", nargs="+", default=["q8_0", "q4_0"])
    ap.add_argument("--kv-cache", nargs="+", default=["f16"])
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gguf", action="store_true", help="r1lite runs llama-FORMAT.gguf too")
    ap.add_argument("--llama-args", default="",
                    help="more llama-bench options, one string: '--repack 0' where its default "
                         "AMX path dies on the CPU (seen on a Sapphire Rapids VM: SIGILL)")
    args = ap.parse_args()
    prefill = 0 if args.depth else args.prefill
    results: dict = {}
    for rnd in range(args.rounds):
        for fmt in args.formats:
            for kv in args.kv_cache:
                mine = args.dir / (f"llama-{fmt}.gguf" if args.gguf else f"r1-{fmt}.safetensors")
                ours = r1lite_bench(mine, max(prefill, 1), args.decode,
                                    args.depth, args.threads, kv)
                theirs = llama_bench(args.llama_bin, args.dir / f"llama-{fmt}.gguf", prefill,
                                     args.decode, args.depth, args.threads, kv, args.llama_args.split())
                results.setdefault((fmt, kv, "r1lite"), []).append(ours)
                results.setdefault((fmt, kv, "llama.cpp"), []).append(theirs)
                print(f"round {rnd + 1} {fmt} kv {kv}: r1lite {ours}  llama.cpp {theirs}",
                      file=sys.stderr, flush=True)

    def med(rows, key):
        vals = [r[key] for r in rows if key in r]
        return statistics.median(vals) if vals else None

    depth = f" at depth {args.depth}" if args.depth else ""
    print(f"| format | KV cache | runtime | prefill {prefill} tok/s | decode {args.decode} tok/s{depth} "
          "| decode vs llama.cpp | decode % of read bandwidth |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for fmt in args.formats:
        for kv in args.kv_cache:
            ref = med(results[fmt, kv, "llama.cpp"], "decode")
            ref_p = med(results[fmt, kv, "llama.cpp"], "prefill")
            for runtime in ("r1lite", "llama.cpp"):
                rows = results[fmt, kv, runtime]
                dec, pre = med(rows, "decode"), med(rows, "prefill")
                pre_s = "" if not prefill else f"{pre:.1f} ({pre / ref_p:.2f}x)"
                bw = med(rows, "bw_frac")
                bw_s = f"{bw:.0f}% of {med(rows, 'bw'):.1f} GB/s" if bw is not None else ""
                print(f"| {fmt} | {kv} | {runtime} | {pre_s} | {dec:.2f} | {dec / ref:.2f}x | {bw_s} |")
    for (fmt, kv, runtime), rows in results.items():
        print(f"rounds {fmt} {kv} {runtime}: decode " + ", ".join(f"{r['decode']:.2f}" for r in rows)
              + ("" if not prefill else "; prefill " + ", ".join(f"{r.get('prefill', 0):.1f}" for r in rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
