#!/usr/bin/env python3
"""transformers' view of the demo model (SmolLM2-135M-Instruct GGUF), stored for the tests:

    python tools/make_smollm2_oracle.py      # writes tests/fixtures/smollm2_oracle.json

transformers reads the same GGUF (dequantized to f32, tokenizer from the metadata), renders the
chat template, and generates greedily. Needs torch, transformers, gguf and accelerate.
"""

from __future__ import annotations

import json
import sys

from repo_path import ROOT  # noqa: E402  (r1lite from this checkout when built in place)
OUT = ROOT / "tests" / "fixtures" / "smollm2_oracle.json"

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]
TEXTS = ["Hello world!", "The year 2025 had 365 days; 3.14159 is pi.", "  spaces\tand\nnewlines  ",
         "naïve café, Größe, 数学, 🤖", "<|im_start|>user\nhi<|im_end|>", "don't I'll we're"]
N_GREEDY = 32


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1lite.resolve import demo_model_path

    path = demo_model_path()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    chats = []
    for messages in (QUESTION, STORY):
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=N_GREEDY,
                                 pad_token_id=tok.eos_token_id)
            seq = out[0].tolist()
            all_logits = model(torch.tensor([seq])).logits[0]
            logits = all_logits[len(ids) - 1]
            # teacher-forced along its own greedy tokens: top1 - top2 at each generated position
            top2 = torch.topk(all_logits[len(ids) - 1:len(seq) - 1], 2).values
            margins = (top2[:, 0] - top2[:, 1]).tolist()
        greedy = [t for t in out[0, len(ids):].tolist()]
        if greedy and greedy[-1] == tok.eos_token_id:
            greedy = greedy[:-1]  # r1lite stops at EOS without returning it
        chats.append({"messages": messages, "prompt": prompt, "prompt_ids": ids,
                      "greedy_tokens": greedy, "greedy_text": tok.decode(greedy),
                      "last_logits_top5": torch.topk(logits, 5).indices.tolist(),
                      "greedy_margins": [round(m, 4) for m in margins[:len(greedy)]],
                      "last_logits_top32": [[i, round(v, 4)] for v, i in zip(*[x.tolist() for x in torch.topk(logits, 32)])],
                      "last_logsumexp": round(float(torch.logsumexp(logits, 0)), 4)})
        print(f"greedy: {tok.decode(greedy)!r}")
    kept = json.loads(OUT.read_text()) if OUT.is_file() else {}  # llama.cpp's figures, added by hand
    OUT.write_text(json.dumps({
        **kept, "chats": chats, "eos_token_id": tok.eos_token_id,
        "encodings": {t: tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS},
    }, indent=1, ensure_ascii=False))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
