#!/usr/bin/env python3
"""Fuzz loading r1lite's model file (metadata: version, config, formats, tokenizer; planes) and
running one token through whatever loads, so the core sees every config and shape that passes
the checks. See tools/fuzz_common.py."""

import atheris

from fuzz_common import expected_errors, quiet, run, seed_model_files, write_scratch

with atheris.instrument_imports():
    import r1lite

ERRORS = expected_errors()


def test_one_input(data: bytes) -> None:
    path = write_scratch("fuzz-model.safetensors", data)
    try:
        model = r1lite.load(path, threads=1, context=8)
        model.logits([0])
    except ERRORS:
        pass


if __name__ == "__main__":
    quiet()
    run(test_one_input, seed_model_files)
