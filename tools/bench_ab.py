#!/usr/bin/env python3
"""Two builds of r1lite side by side on a noisy machine: one worker process per build (each with
its own PYTHONPATH, a folder holding an r1lite package with its _core), the parent alternating
single timed calls between them, so that both see the same moments of the machine's load.
Prints per token count the median milliseconds of each build and B's median as a multiple of A's.

    # a copy of the package before a change, then the build after it
    cp -r python/r1lite /tmp/before/r1lite          (with its _core*.so)
    python tools/bench_ab.py /tmp/before python kernel q4_1 --rows 65536 --cols 1536 --threads 1
    python tools/bench_ab.py /tmp/before python demo --threads 2      # verify passes on the demo
    python tools/bench_ab.py /tmp/before python demo --model FILE.gguf # ... on another model

kernel FMT: one matmul of 1..9 tokens (--tokens: other counts) against a random [rows, cols] matrix (`_core.matmul`,
threads ignored: one thread). demo: forward passes of 1..9 tokens after 300 cached positions
(the cache rolled back after each), what speculative decoding's verification costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

TOKENS = [1, 2, 3, 4, 5, 6, 8, 9]


def worker(argv: list[str]) -> None:
    import time

    import numpy as np
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("fmt")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--cols", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--model")
    ap.add_argument("--tokens", type=int, nargs="+")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if a.mode == "kernel":
        from r1lite import _core, quant
        from r1lite.formats.blocks import random_blocks
        if quant.TABLE[a.fmt]["layout"] == "planar":
            w, _, d = quant.encode((rng.standard_normal((a.rows, a.cols)) * 0.02).astype(np.float32), a.fmt)
        else:
            w, d = random_blocks(a.fmt, a.rows * a.cols // quant.TABLE[a.fmt]["block"], rng).reshape(a.rows, -1), None
        xs = {n: rng.standard_normal((n, a.cols)).astype(np.float32) for n in a.tokens}

        def run(n: int) -> float:
            t = time.perf_counter()
            _core.matmul(xs[n], w, a.fmt, _core.active_isa(), d)
            return time.perf_counter() - t
    else:
        import r1lite
        model = r1lite.load(a.model, threads=a.threads)
        vocab = model.config["vocab_size"]
        session = model.session().__enter__()
        session.reset()
        session.forward(rng.integers(0, vocab, 300).tolist())

        def run(n: int) -> float:
            ids = rng.integers(0, vocab, n).tolist()
            t = time.perf_counter()
            session.forward(ids, all_positions=n > 1)
            took = time.perf_counter() - t
            session.truncate(300)
            return took
    print("ready", flush=True)
    for line in sys.stdin:
        print(run(int(line)), flush=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("a", help="PYTHONPATH of build A (a folder holding r1lite/)")
    ap.add_argument("b", help="PYTHONPATH of build B")
    ap.add_argument("mode", choices=["kernel", "demo"])
    ap.add_argument("fmt", nargs="?", default="q4_1", help="kernel: the weight format")
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--cols", type=int, default=1536)
    ap.add_argument("--threads", type=int, default=2, help="demo: threads")
    ap.add_argument("--model", default="demo", help="demo: the model (default the demo itself)")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--tokens", type=int, nargs="+", default=TOKENS,
                    help="the token counts timed (default 1-9: decode and verification; in kernel mode 64 or "
                         "512 time prefill; demo mode computes every position's logits)")
    args = ap.parse_args()
    tokens = args.tokens
    procs = {}
    for name, path in (("A", args.a), ("B", args.b)):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", args.mode, args.fmt, "--rows", str(args.rows),
               "--cols", str(args.cols), "--threads", str(args.threads), "--model", args.model, "--tokens", *map(str, tokens)]
        procs[name] = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=os.path.abspath(path)),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if procs[name].stdout.readline().strip() != "ready":
            raise SystemExit(f"build {name} ({path}) did not start")
    times = {(name, n): [] for name in procs for n in tokens}
    for _ in range(args.rounds):
        for n in tokens:
            for name, proc in procs.items():
                proc.stdin.write(f"{n}\n")
                proc.stdin.flush()
                times[(name, n)].append(float(proc.stdout.readline()))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    med = {key: statistics.median(v) for key, v in times.items()}
    what = f"{args.fmt} [{args.rows}, {args.cols}]" if args.mode == "kernel" else f"{args.model}, {args.threads} threads"
    print(f"{what}, medians of {args.rounds} alternated calls")
    print("| tokens | " + " | ".join(str(n) for n in tokens) + " |")
    print("| --- |" + " --- |" * len(tokens))
    for name in procs:
        print(f"| {name} ms (in times of the first count) | "
              + " | ".join(f"{med[(name, n)] * 1e3:.2f} ({med[(name, n)] / med[(name, tokens[0])]:.2f})" for n in tokens) + " |")
    print("| B / A | " + " | ".join(f"{med[('B', n)] / med[('A', n)]:.2f}" for n in tokens) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
