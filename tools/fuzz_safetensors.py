#!/usr/bin/env python3
"""Fuzz r1lite's safetensors reader (header JSON, offsets, dtypes incl. F8_E4M3, bounds) and the
FP8 dequantization that reads through it. See tools/fuzz_common.py."""

import atheris

from fuzz_common import FIXTURES, expected_errors, quiet, run, write_scratch

with atheris.instrument_imports():
    from r1lite.formats import fp8
    from r1lite.formats.safetensors import SafetensorsFile

ERRORS = expected_errors()


def test_one_input(data: bytes) -> None:
    path = write_scratch("fuzz.safetensors", data)
    try:
        f = SafetensorsFile(path)
        for name in f.keys():
            a, b = f.array(name), f.read(name)
            if a.tobytes() != b.tobytes():
                raise AssertionError(f"{name}: mapped and read bytes differ")
            if f.dtype(name) == "F8_E4M3" and a.ndim == 2 and name + "_scale_inv" in f:
                fp8.dequantize(a, f.array(name + "_scale_inv"), (32, 24), name)
    except ERRORS:
        pass


def seeds():
    return [(FIXTURES / d / "model.safetensors").read_bytes()
            for d in ("qwen2_f32", "deepseek_v3_fp8", "llama_f16")]


if __name__ == "__main__":
    quiet()
    run(test_one_input, seeds)
