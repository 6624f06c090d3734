#!/usr/bin/env python3
"""Store transformers' log-probabilities for the tiny R1 test model (tests/tiny_model.py).

    python tools/make_logprobs_oracle.py     # rewrites tests/fixtures/tiny_r1_logprobs.json

For a chat prompt ("Hi" through the R1 template, as the server builds it) and a raw text prompt:
transformers' greedy continuation (GREEDY_NEW tokens), each generated token's log-probability
and the TOP most likely tokens (torch.log_softmax of the float32 logits), and for the text
prompt the log-probability of each prompt token after the ones before it (what completions'
echo + logprobs return). The server tests compare against this file without torch; the live
test recomputes it. Needs torch and transformers.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tiny_r1_logprobs.json"
GREEDY_NEW, TOP = 6, 5
CHAT = [{"role": "user", "content": "Hi"}]
TEXT = "The capital of France is Paris, and"


def _scores(model, ids: list[int]):
    """log_softmax of transformers' logits at every position of ids: [len(ids), vocab]."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def _greedy(model, prompt: list[int]) -> dict:
    ids, out = list(prompt), {"prompt": list(prompt), "tokens": [], "logprobs": [], "top_ids": [],
                              "top_logprobs": []}
    for _ in range(GREEDY_NEW):
        lp = _scores(model, ids)[-1]
        top = lp.topk(TOP)
        token = int(top.indices[0])
        out["tokens"].append(token)
        out["logprobs"].append(float(lp[token]))
        out["top_ids"].append([int(i) for i in top.indices])
        out["top_logprobs"].append([float(v) for v in top.values])
        ids.append(token)
    return out


def _prompt_scores(model, prompt: list[int]) -> dict:
    lp = _scores(model, prompt)
    top = lp[:-1].topk(TOP, dim=-1)
    return {"prompt": list(prompt),
            "prompt_logprobs": [None] + [float(lp[i - 1, t]) for i, t in enumerate(prompt) if i],
            "prompt_top_ids": [None] + [[int(v) for v in row] for row in top.indices],
            "prompt_top_logprobs": [None] + [[float(v) for v in row] for row in top.values]}


def compute(folder: Path) -> dict:
    """The oracle for the tiny R1 model in folder (built by tiny_model.build_tiny_r1)."""
    import torch
    from transformers import AutoModelForCausalLM

    import r1lite

    tok = r1lite.load(folder, threads=1, context=256)  # its tokenizer and chat template
    chat_ids = tok.chat_prompt(CHAT).ids
    text_ids = tok.text_prompt(TEXT).ids
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return {"chat": _greedy(model, chat_ids), "text": {**_greedy(model, text_ids), **_prompt_scores(model, text_ids)},
            "text_prompt": TEXT, "top": TOP}


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_r1

    with tempfile.TemporaryDirectory() as tmp:
        oracle = compute(build_tiny_r1(Path(tmp) / "tiny_r1"))
    OUT.write_text(json.dumps(oracle, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
