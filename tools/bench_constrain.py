"""Per-token cost of constrained decoding on the R1-Distill tokenizer (151,936 logits): the
llguidance mask (Constraint.allowed) and the masked logits (Constraint.mask), measured along
random walks through a JSON schema's language and a tool call's.

    python tools/bench_constrain.py
"""

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from r1lite import constrain  # noqa: E402
from r1lite.tokenizer import Tokenizer  # noqa: E402
from tiny_model import ASSETS, VOCAB  # noqa: E402

SCHEMA = {"type": "object", "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 8},
                                  "maxItems": 4}}}


def walk(grammar, table, rng, eos):
    c = constrain.Constraint(grammar, table)
    logits = rng.standard_normal(VOCAB).astype(np.float32)
    t_mask, t_apply, n = 0.0, 0.0, 0
    while n < 400:
        t0 = time.perf_counter()
        allowed = c.allowed()
        t1 = time.perf_counter()
        c.mask(logits)  # computes the mask again, then applies it
        t2 = time.perf_counter()
        t_mask, t_apply, n = t_mask + (t1 - t0), t_apply + (t2 - t1), n + 1
        ids = np.flatnonzero(allowed)
        token = int(rng.choice(ids))
        if token in eos:
            break
        c.consume(token)
    return t_mask, t_apply, n


def main():
    tok = Tokenizer.from_folder(ASSETS)
    t0 = time.perf_counter()
    table = constrain.token_table(tok, VOCAB)
    print(f"token table: {time.perf_counter() - t0:.2f} s (once per tokenizer)")
    rng = np.random.default_rng(0)
    for name, grammar in (("json_schema", constrain.json_schema(SCHEMA)),
                          ("json_object", constrain.json_object())):
        totals = np.zeros(3)
        for _ in range(20):
            totals += walk(grammar, table, rng, set(tok.eos_ids))
        mask_ms, full_ms, n = totals[0] / totals[2] * 1e3, totals[1] / totals[2] * 1e3, int(totals[2])
        print(f"{name}: {n} tokens, mask {mask_ms:.3f} ms/token, mask + apply to logits "
              f"{full_ms:.3f} ms/token")


if __name__ == "__main__":
    main()
