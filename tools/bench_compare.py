#!/usr/bin/env python3
"""r1lite against llama.cpp on the same weights, runs interleaved, medians and ratios:

    python tools/make_bench_models.py /tmp/bench            # once: HF folder, GGUF, r1lite files
    python tools/bench_compare.py /tmp/bench --llama-python /path/to/venv/bin/python --rounds 3

--llama-python is a Python with llama-cpp-python installed (it quantizes the f16 GGUF to q8_0 /
q4_0 with llama.cpp's own quantizer on first use). Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = {"prefill": float(re.search(r"prefill \d+ tokens: ([\d.]+)", out).group(1)),
           "decode": float(re.search(r"decode \d+ tokens:\s+([\d.]+)", out).group(1))}
    bw = re.search(r"(\d+)% of the measured read bandwidth \(([\d.]+) GB/s", out)
    if bw:
        res["bw_frac"], res["bw"] = float(bw.group(1)), float(bw.group(2))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--llama-python", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", nargs="+", default=["q8_0", "q4_0"])
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    common = ["--prefill", str(args.prefill), "--decode", str(args.decode)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    for fmt in args.formats:
        gguf = args.dir / f"model-{fmt}.gguf"
        if not gguf.is_file():
            subprocess.run([args.llama_python, str(HERE / "bench_llamacpp.py"), "--quantize",
                            str(args.dir / "model-f16.gguf"), str(gguf), fmt], check=True,
                           capture_output=True)
    results = {(fmt, who): [] for fmt in args.formats for who in ("r1lite", "llama.cpp")}
    for r in range(args.rounds):
        for fmt in args.formats:
            results[fmt, "r1lite"].append(run(
                [sys.executable, str(HERE / "bench.py"), "--model",
                 str(args.dir / f"r1-{fmt}.safetensors")] + common))
            results[fmt, "llama.cpp"].append(run(
                [args.llama_python, str(HERE / "bench_llamacpp.py"),
                 str(args.dir / f"model-{fmt}.gguf")] + common))
            print(f"round {r + 1}/{args.rounds} {fmt}: r1lite {results[fmt, 'r1lite'][-1]} "
                  f"llama.cpp {results[fmt, 'llama.cpp'][-1]}", file=sys.stderr)

    def med(fmt, who, key):
        return statistics.median(x[key] for x in results[fmt, who])
    print(f"| format | runtime | prefill {args.prefill} tok/s | decode tok/s | decode vs llama.cpp | "
          "decode % of read bandwidth |")
    print("| --- | --- | --- | --- | --- | --- |")
    for fmt in args.formats:
        for who in ("r1lite", "llama.cpp"):
            ratio_p = med(fmt, who, "prefill") / med(fmt, "llama.cpp", "prefill")
            ratio_d = med(fmt, who, "decode") / med(fmt, "llama.cpp", "decode")
            bw = (f"{med(fmt, who, 'bw_frac'):.0f}% of {med(fmt, who, 'bw'):.1f} GB/s"
                  if who == "r1lite" else "")
            print(f"| {fmt} | {who} | {med(fmt, who, 'prefill'):.1f} ({ratio_p:.2f}x) | "
                  f"{med(fmt, who, 'decode'):.2f} | {ratio_d:.2f}x | {bw} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
