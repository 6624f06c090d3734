#!/usr/bin/env python3
"""Checks the test suite's llama.cpp-style GGUF writers (tests/test_gguf_llama.py,
tests/test_gguf_deepseek.py) against llama.cpp itself: fixtures written as GGUF (llama3 with and
without rope_freqs; the deepseek2 fixtures GGUF can express) are evaluated by llama-cpp-python
and compared with transformers' stored logits.

    python tools/llamacpp_gguf_check.py --llama-python /work/llama-venv/bin/python

Two interpreters: this one writes the files (r1lite's checkout, gguf), the other runs llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests")]

EVAL = """
import sys, numpy as np
from llama_cpp import Llama
for arg in sys.argv[1:]:
    path, oracle_path = arg.split("=")
    oracle = np.load(oracle_path)
    tokens = [int(t) for t in oracle["tokens"]]
    llm = Llama(model_path=path, n_ctx=256, logits_all=True, verbose=False, n_threads=2)
    llm.eval(tokens)
    got, want = np.array(llm.scores[:len(tokens)]), oracle["logits"]
    print(f"{path}: llama.cpp vs transformers max|diff|/max|logit| "
          f"{np.abs(got - want).max() / np.abs(want).max():.2e}, argmax equal at "
          f"{(got.argmax(-1) == want.argmax(-1)).mean():.0%} of positions")
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-python", required=True, help="a Python with llama-cpp-python")
    args = ap.parse_args()
    import gguf
    from conftest import FIXTURES
    from test_gguf_deepseek import REPRESENTABLE, write_deepseek2_gguf
    from test_gguf_llama import write_llama_gguf

    vocab = 0
    write_header = gguf.GGUFWriter.write_header_to_file

    def with_vocab(self, *a, **k):  # llama.cpp will not load a model without a vocabulary
        self.add_tokenizer_model("gpt2")
        self.add_tokenizer_pre("default")
        self.add_token_list([f"<t{i}>" for i in range(vocab)])
        self.add_token_types([1] * vocab)
        self.add_token_merges(["<t 0>"])
        return write_header(self, *a, **k)

    gguf.GGUFWriter.write_header_to_file = with_vocab
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name, flag in (("rope_freqs", True), ("no_rope_freqs", False)):
            folder = FIXTURES / "llama3_f32"
            jobs.append((folder, lambda f, out, flag=flag: write_llama_gguf(f, out, rope_freqs=flag), name))
        for name in REPRESENTABLE:
            if json.loads((FIXTURES / name / "config.json").read_text()).get("q_lora_rank"):
                # llama.cpp reads "no q_lora" only from a 27-layer model (V2-Lite), so it
                # cannot load the small fixture without one
                jobs.append((FIXTURES / name, write_deepseek2_gguf, "deepseek2"))
        pairs = []
        for folder, write, label in jobs:
            vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
            path = write(folder, Path(tmp) / f"{folder.name}-{label}.gguf")
            pairs.append(f"{path}={folder / 'oracle.npz'}")
        return subprocess.call([args.llama_python, "-c", EVAL, *pairs])


if __name__ == "__main__":
    sys.exit(main())
