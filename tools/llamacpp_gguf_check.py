#!/usr/bin/env python3
"""Checks the test suite's llama.cpp-style GGUF writer (tests/test_gguf_llama.py) against llama.cpp
itself: the llama3 fixture written as GGUF (q/k rows permuted, rope_freqs) is evaluated by
llama-cpp-python and compared with transformers' stored logits, with and without rope_freqs.

    python tools/llamacpp_gguf_check.py --llama-python /work/llama-venv/bin/python

Two interpreters: this one writes the files (r1lite's checkout, gguf), the other runs llama.cpp.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests")]

EVAL = """
import sys, numpy as np
from llama_cpp import Llama
oracle = np.load(sys.argv[1])
tokens = [int(t) for t in oracle["tokens"]]
for path in sys.argv[2:]:
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
    from test_gguf_llama import write_llama_gguf

    folder = FIXTURES / "llama3_f32"
    vocab = 157
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
        paths = [str(write_llama_gguf(folder, Path(tmp) / f"llama3-{name}.gguf", rope_freqs=flag))
                 for name, flag in (("rope_freqs", True), ("no_rope_freqs", False))]
        return subprocess.call([args.llama_python, "-c", EVAL, str(folder / "oracle.npz"), *paths])


if __name__ == "__main__":
    sys.exit(main())
