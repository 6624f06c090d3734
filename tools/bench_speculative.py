#!/usr/bin/env python3
"""Speculative decoding on the demo model (SmolLM2-135M-Instruct): decode tok/s with and without
prompt lookup on a code-editing prompt (the answer repeats the code) and a plain question, the
cost of one verification pass of k + 1 tokens against one decode step, and a draft-equals-target
run (every proposal accepted) per k. Greedy; each speculative output is checked equal to the
plain one. Runs are interleaved over ROUNDS rounds; medians are printed.

    python tools/bench_speculative.py [--rounds 3] [--tokens 160] [--threads 2] \
        [--verify-model MODEL]   # also the verification cost on a larger (memory-bound) model
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import repo_path  # noqa: F401  (this checkout's r1lite when built in place)

import r1lite
from r1lite.speculative import DEFAULT_N, DEFAULT_NGRAM_K

CODE = '''def mean(values):
    total = 0
    count = 0
    for value in values:
        total += value
        count += 1
    if count == 0:
        return 0.0
    return total / count


def variance(values):
    m = mean(values)
    total = 0
    for value in values:
        total += (value - m) ** 2
    return total / len(values)
'''
PROMPTS = {
    "code edit": "Rewrite this Python code with the function `mean` renamed to `average` "
                 "(also where it is called). Reply with the whole code only.\n\n" + CODE,
    "question": "Why is the sky blue? Answer in a few sentences.",
}


def decode_run(model, text, tokens, spec):
    g = model.chat([{"role": "user", "content": text}], max_new_tokens=tokens, temperature=0,
                   speculative=spec)
    return g


def verify_cost(model, ks, depth=300, repeats=20):
    """Median seconds of one decode step and of one all-positions pass of k + 1 tokens, both
    after `depth` cached positions (the cache rolled back after each)."""
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, model.config["vocab_size"], depth).tolist()
    out = {}
    with model.session() as s:
        s.reset()
        s.forward(ctx)
        for k in [0] + list(ks):
            times = []
            for _ in range(repeats):
                ids = rng.integers(0, model.config["vocab_size"], k + 1).tolist()
                t = time.perf_counter()
                s.forward(ids, all_positions=k > 0)
                times.append(time.perf_counter() - t)
                s.truncate(depth)
            out[k] = statistics.median(times)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=160, help="tokens generated per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ks", default="1,2,4,8", help="k of the verification cost and draft runs")
    ap.add_argument("--ngram-ks", default="2,4,8", help="prompt lookup's caps on k")
    ap.add_argument("--verify-model", default=None,
                    help="a model whose verification cost is measured too (e.g. a 1.5B shape)")
    args = ap.parse_args()
    ks = [int(k) for k in args.ks.split(",")]

    model = r1lite.load("demo", threads=args.threads)
    draft = r1lite.load("demo", threads=args.threads)  # the same weights: every token accepted
    runs = {(name, "plain"): None for name in PROMPTS}
    for k in [int(k) for k in args.ngram_ks.split(",")]:
        label = f"ngram k<={k} n={DEFAULT_N}" + (" (default)" if k == DEFAULT_NGRAM_K else "")
        runs.update({(name, label): {"proposer": "ngram", "k": k} for name in PROMPTS})
    runs.update({("code edit", f"draft=target k={k}"): {"draft": draft, "k": k} for k in ks})
    results = {key: [] for key in runs}
    costs = {k: [] for k in [0] + ks}
    big = r1lite.load(args.verify_model, threads=args.threads) if args.verify_model else None
    big_costs = {k: [] for k in [0] + ks}
    for _ in range(args.rounds):
        for key, spec in runs.items():
            results[key].append(decode_run(model, PROMPTS[key[0]], args.tokens, spec))
        for k, t in verify_cost(model, ks).items():
            costs[k].append(t)
        if big is not None:
            for k, t in verify_cost(big, ks, repeats=5).items():
                big_costs[k].append(t)

    print(f"demo model, {args.threads} threads, greedy, {args.tokens} new tokens, "
          f"medians of {args.rounds} interleaved rounds")
    print("| prompt | decoding | decode tok/s | speedup | accepted | tokens per step | same output |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (name, how), gens in results.items():
        plain = results[(name, "plain")]
        tps = statistics.median(g.stats["decode_tok_s"] for g in gens)
        base = statistics.median(g.stats["decode_tok_s"] for g in plain)
        same = all(g.tokens == p.tokens for g, p in zip(gens, plain))
        acc = (f"{statistics.median(g.stats['acceptance_rate'] for g in gens):.0%}"
               if how != "plain" else "-")
        per = (f"{statistics.median(g.stats['tokens_per_step'] for g in gens):.2f}"
               if how != "plain" else "1")
        print(f"| {name} ({len(gens[0].tokens)} tokens) | {how} | {tps:.1f} | {tps / base:.2f}x | "
              f"{acc} | {per} | {'yes' if same else 'NO'} |")
    print()
    for name, table in (("demo", costs), (args.verify_model, big_costs)):
        if not table[0]:
            continue
        step = statistics.median(table[0])
        print(f"\n{name}: after 300 cached positions")
        print("| pass | ms | vs one decode step | per token fed |")
        print("| --- | --- | --- | --- |")
        print(f"| decode step (1 token) | {step * 1e3:.2f} | 1.00x | 1.00x |")
        for k in ks:
            t = statistics.median(table[k])
            print(f"| verify k={k} ({k + 1} tokens) | {t * 1e3:.2f} | {t / step:.2f}x | "
                  f"{t / step / (k + 1):.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
