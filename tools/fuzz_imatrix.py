#!/usr/bin/env python3
"""Fuzz the importance-matrix reader (llama.cpp's GGUF imatrix and its legacy .dat, read by
r1lite.imatrix) and what convert --imatrix does with an entry: fit it to a model's matrices
(a small llama config whose widths hold K-quant blocks). See tools/fuzz_common.py."""

import struct

import atheris

from fuzz_common import SCRATCH, expected_errors, quiet, run, write_scratch

with atheris.instrument_imports():
    import r1lite  # noqa: F401
    from r1lite.config import normalize_hf_config
    from r1lite.converter import _importance
    from r1lite.imatrix import read_imatrix
    from r1lite.recipes import tensor_formats

ERRORS = expected_errors()
CONFIG = normalize_hf_config({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
    "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 512, "rms_norm_eps": 1e-5, "max_position_embeddings": 256,
    "tie_word_embeddings": False}, "fuzz config")
FORMATS = tensor_formats(CONFIG, "q4_k_m")


def test_one_input(data: bytes) -> None:
    path = write_scratch("fuzz.imatrix", data)
    try:
        _importance(read_imatrix(path), CONFIG, FORMATS)
    except ERRORS:
        pass


def seeds():
    """An imatrix of CONFIG in llama.cpp's GGUF format and the same in the legacy .dat one."""
    import numpy as np

    from r1lite.formats.tensors import expected_tensors
    from r1lite.imatrix import Imatrix, imatrix_name, write_imatrix

    rng = np.random.default_rng(0)
    entries = {}
    for name, (shape, kind) in expected_tensors(CONFIG).items():
        if kind == "matrix" and name != "tok_embd":
            key, _ = imatrix_name(name, CONFIG)
            entries[key] = (rng.random((1, shape[-1]), dtype=np.float32) * 10, np.array([64], np.float32))
    gguf = write_imatrix(SCRATCH / "seed.imatrix.gguf", Imatrix(entries, ["seed.txt"], 2, 32))
    legacy = struct.pack("<i", len(entries))
    for key, (sums, counts) in entries.items():
        legacy += struct.pack("<i", len(key)) + key.encode() + struct.pack("<ii", int(counts[0]), sums.size)
        legacy += (sums * counts[0]).astype(np.float32).tobytes()
    legacy += struct.pack("<i", 2) + struct.pack("<i", 8) + b"seed.txt"
    return [gguf.read_bytes(), legacy]


if __name__ == "__main__":
    quiet()
    import r1lite.imatrix
    r1lite.imatrix.warn = lambda message: None  # entries a mutated file lacks: warned, valid
    run(test_one_input, seeds)
