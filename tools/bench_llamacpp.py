#!/usr/bin/env python3
"""llama.cpp's side of the benchmark, through llama-cpp-python (run it with a Python that has
`pip install llama-cpp-python`; it builds llama.cpp from source). Output lines match
tools/bench.py so tools/bench_compare.py can parse both.

    python tools/bench_llamacpp.py MODEL.gguf [--prefill 512] [--decode 128] [--threads N]
    python tools/bench_llamacpp.py --quantize IN-f16.gguf OUT.gguf f32|q8_0|q4_0
    python tools/bench_llamacpp.py --greedy MODEL.gguf tests/fixtures/smollm2_oracle.json
        (llama.cpp's greedy tokens for the oracle's chat prompts, as JSON)
    python tools/bench_llamacpp.py --perplexity MODEL.gguf IDS.json   (see tools/perplexity.py)
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def quantize(src: str, dst: str, fmt: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"f32": llama_cpp.LLAMA_FTYPE_ALL_F32, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
                    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}[fmt]
    params.pure = True  # every matrix in fmt, as r1lite convert does (no q6_k output layer)
    params.allow_requantize = True  # e.g. the demo model's Q4_1 -> q8_0
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def greedy(path: str, oracle_path: str, n: int = 16) -> None:
    import json

    from llama_cpp import Llama

    oracle = json.load(open(oracle_path))
    llm = Llama(model_path=path, n_ctx=512, n_threads=os.cpu_count(), verbose=False)
    out = []
    for chat in oracle["chats"]:
        llm.reset()
        llm.eval(chat["prompt_ids"])
        tokens = []
        for _ in range(n):
            t = llm.sample(temp=0.0)
            if t == oracle["eos_token_id"]:
                break
            tokens.append(t)
            llm.eval([t])
        out.append(tokens)
    print(json.dumps(out))


def perplexity(path: str, ids_path: str) -> None:
    """The same windows and scoring as tools/perplexity.py, on llama.cpp's logits."""
    import json
    import math

    import numpy as np
    from llama_cpp import Llama

    spec = json.load(open(ids_path))
    ids, ctx = spec["ids"], spec["ctx"]
    llm = Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
                n_threads=os.cpu_count(), verbose=False)
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, ctx):
        window = ids[start:start + ctx]
        if len(window) < 2:
            break
        llm.reset()
        llm.eval(window)
        logits = np.array(llm.scores[:len(window) - 1], dtype=np.float64)
        logz = logits.max(-1) + np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))
        total += float((logz - logits[np.arange(len(window) - 1), window[1:]]).sum())
        count += len(window) - 1
    print(f"{path}: perplexity {math.exp(total / count):.4f} over {count} tokens (windows of {ctx})")


def bench(path: str, prefill: int, decode: int, threads: int) -> None:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=prefill + decode + 8, n_batch=prefill, n_ubatch=prefill,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    rng = np.random.default_rng(1)
    vocab = llm.n_vocab()
    prompt = rng.integers(0, vocab, prefill).tolist()
    llm.eval(prompt[:1])  # warm-up: touch every weight page once (mmap faults)
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    prefill_rate = prefill / (time.perf_counter() - t)
    t = time.perf_counter()
    for token in rng.integers(0, vocab, decode).tolist():  # speed does not depend on which
        llm.eval([token])
    decode_rate = decode / (time.perf_counter() - t)
    print(f"model: {os.path.basename(path)} llama.cpp, threads {threads}")
    print(f"prefill {prefill} tokens: {prefill_rate:.1f} tok/s")
    print(f"decode {decode} tokens:  {decode_rate:.2f} tok/s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--quantize", nargs=3, metavar=("SRC", "DST", "FMT"))
    ap.add_argument("--greedy", nargs=2, metavar=("MODEL", "ORACLE"))
    ap.add_argument("--perplexity", nargs=2, metavar=("MODEL", "IDS_JSON"))
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.quantize:
        quantize(*args.quantize)
        return 0
    if args.greedy:
        greedy(*args.greedy)
        return 0
    if args.perplexity:
        perplexity(*args.perplexity)
        return 0
    bench(args.model, args.prefill, args.decode, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
