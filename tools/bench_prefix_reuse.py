#!/usr/bin/env python3
"""Time to first token of a chat's second turn with and without prefix reuse, through the server
(streamed, as a chat client sees it):

    python tools/bench_prefix_reuse.py [--model demo] [--prompt-tokens 2000] [--rounds 3]

Each round runs the same two-turn conversation on a server with prefix reuse (--cache-ram
default) and on one without (cache_ram 0), interleaved: turn 1 is a ~2000-token prompt (a long
text and a question), turn 2 appends turn 1's answer and a follow-up question. Reported: median
TTFT of turn 1, of turn 2 cold, of turn 2 warm, and warm turn 2 / turn 1 (issue 18's target:
<= 0.2). Greedy, 16 answer tokens a turn; the two servers' answers are checked identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from repo_path import ROOT  # noqa: F401  (r1lite from this checkout when built in place)

import r1lite  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from test_server import running  # noqa: E402

PARAGRAPH = ("The lighthouse keeper wrote down the weather every hour: the wind, the colour of the "
             "sea, the ships that passed and the birds that rested on the rail. ")


def ttft(client, messages) -> tuple[float, str]:
    """(seconds to the first streamed token, the whole answer)."""
    t0 = time.perf_counter()
    first, text = None, []
    for chunk in client.chat.completions.create(model="tiny", messages=messages, max_tokens=16,
                                                temperature=0, stream=True):
        delta = chunk.choices[0].delta if chunk.choices else None
        piece = (delta.content or getattr(delta, "reasoning_content", None) or "") if delta else ""
        if piece and first is None:
            first = time.perf_counter() - t0
        text.append(piece)
    return first, "".join(text)


def conversation(url: str, long_text: str) -> tuple[float, float, list[str]]:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    turn1 = [{"role": "user", "content": long_text + "\nWhat did the keeper write down?"}]
    t1, a1 = ttft(client, turn1)
    turn2 = turn1 + [{"role": "assistant", "content": a1}, {"role": "user", "content": "And why?"}]
    t2, a2 = ttft(client, turn2)
    return t1, t2, [a1, a2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--prompt-tokens", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    model = r1lite.load(args.model, threads=args.threads, context=args.prompt_tokens + 512)
    per = len(model.tokenizer.encode(PARAGRAPH))
    long_text = PARAGRAPH * max(1, args.prompt_tokens // per)
    times = {"turn 1": [], "turn 2 cold": [], "turn 2 warm": []}
    for _ in range(args.rounds):
        with running(model, cache_ram=0) as (url, _):
            t1, t2, cold = conversation(url, long_text)
        times["turn 1"].append(t1)
        times["turn 2 cold"].append(t2)
        with running(model) as (url, _):
            t1, t2, warm = conversation(url, long_text)
        times["turn 1"].append(t1)
        times["turn 2 warm"].append(t2)
        assert warm == cold, "prefix reuse changed the answers"
    prompt = len(model.chat_prompt([{"role": "user", "content": long_text}]).ids)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.model}: turn 1 prompt {prompt} tokens, {model.threads} threads, {args.rounds} rounds")
    for k, v in med.items():
        print(f"  {k:12} TTFT {v:.3f} s (median of {len(times[k])})")
    print(f"  turn 2 warm / turn 1: {med['turn 2 warm'] / med['turn 1']:.3f}   "
          f"turn 2 warm / turn 2 cold: {med['turn 2 warm'] / med['turn 2 cold']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
