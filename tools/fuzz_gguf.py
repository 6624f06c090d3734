#!/usr/bin/env python3
"""Fuzz the GGUF importer (r1lite's own parser: header, metadata, tensor
types and shapes, the tokenizer rebuilt from metadata), then one token through what loads.
See tools/fuzz_common.py."""

import sys

import atheris

from fuzz_common import FIXTURES, SCRATCH, expected_errors, quiet, run, write_scratch

with atheris.instrument_imports():
    import r1lite

ERRORS = expected_errors()


def test_one_input(data: bytes) -> None:
    path = write_scratch("fuzz.gguf", b"GGUF" + data[4:] if len(data) >= 4 else data)
    try:
        model = r1lite.load(path, threads=1, context=8)
        model.logits([0])
    except ERRORS:
        pass


def seeds():
    """Small GGUF files (f32, f16 matrices) written with the gguf package from a fixture."""
    import gguf
    import numpy as np
    from gguf_write import add_model_header

    from r1lite.formats.hf import load_hf_folder
    from r1lite.formats.names import gguf_name
    from r1lite.formats.tensors import as_f32

    cfg, tensors, _ = load_hf_folder(FIXTURES / "llama_f16")
    out = []
    for ftype in ("f32", "f16"):
        path = SCRATCH / f"seed-{ftype}.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        add_model_header(w, cfg)
        w.add_tokenizer_model("gpt2")
        vocab = ["a", "b", "ab"] + [f"<x{i}>" for i in range(cfg["vocab_size"] - 3)]
        w.add_token_list(vocab)
        w.add_token_types([1, 1, 1] + [3] * (cfg["vocab_size"] - 3))
        w.add_token_merges(["a b"])
        w.add_bos_token_id(3)
        w.add_eos_token_id(4)
        w.add_chat_template("{% for m in messages %}<x5>{{ m['content'] }}{% endfor %}")
        for name, (arr, fmt) in tensors.items():
            a = as_f32(arr, fmt)
            if ftype == "f16" and a.ndim == 2:
                a = a.astype(np.float16)
            w.add_tensor(gguf_name(name), np.ascontiguousarray(a))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out.append(path.read_bytes())
    # a deepseek2 file (MLA, experts stacked, yarn), as tests/test_gguf_deepseek.py writes it
    sys.path.insert(0, str(FIXTURES.parent))
    from test_gguf_deepseek import write_deepseek2_gguf

    out.append(write_deepseek2_gguf(FIXTURES / "deepseek_v3_fp8", SCRATCH / "seed-deepseek2.gguf").read_bytes())
    return out


if __name__ == "__main__":
    quiet()
    run(test_one_input, seeds)
