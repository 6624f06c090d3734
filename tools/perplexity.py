#!/usr/bin/env python3
"""Perplexity of a model on a fixed text, in windows of --ctx tokens (each window starts from an
empty cache; its first token is not scored), for comparing weight formats and runtimes:

    python tools/perplexity.py MODEL [--text /usr/share/common-licenses/GPL-3] [--tokens 4096]
    python tools/perplexity.py MODEL --dump-ids ids.json     # the token ids, for llama.cpp:
    python tools/bench_llamacpp.py --perplexity MODEL.gguf ids.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

import r1lite

DEFAULT_TEXT = "/usr/share/common-licenses/GPL-3"  # a fixed English text on every Debian machine


def nll_windows(logits_fn, ids: list[int], ctx: int) -> tuple[float, int]:
    """(sum of -log p(next token), tokens scored) over windows of ctx tokens."""
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, ctx):
        window = ids[start:start + ctx]
        if len(window) < 2:
            break
        logits = np.asarray(logits_fn(window), dtype=np.float64)[:-1]
        logz = logits.max(-1) + np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
        total += float((logz - logits[np.arange(len(window) - 1), window[1:]]).sum())
        count += len(window) - 1
    return total, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--dump-ids", default=None)
    args = ap.parse_args()
    model = r1lite.load(args.model, context=args.ctx)
    ids = model.tokenizer.encode(open(args.text, encoding="utf-8").read())[:args.tokens]
    if args.dump_ids:
        json.dump({"ids": ids, "ctx": args.ctx}, open(args.dump_ids, "w"))
    total, count = nll_windows(model.logits, ids, args.ctx)
    print(f"{args.model}: perplexity {math.exp(total / count):.4f} over {count} tokens "
          f"(windows of {args.ctx})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
