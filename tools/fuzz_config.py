#!/usr/bin/env python3
"""Fuzz the JSON a Hugging Face folder brings: config.json (every architecture's normalizer),
the shard index, tokenizer.json, tokenizer_config.json (chat template) and
generation_config.json, each beside otherwise valid fixture weights. The first input byte picks
the file. See tools/fuzz_common.py."""

import shutil

import atheris

from fuzz_common import FIXTURES, SCRATCH, expected_errors, quiet, run

with atheris.instrument_imports():
    import r1lite

ERRORS = expected_errors()
FILES = ("config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
         "generation_config.json")
FOLDERS = {}


def folder_for(which: int):
    """A scratch copy of a fixture with the R1 tokenizer files beside it (made once)."""
    if which not in FOLDERS:
        src = FIXTURES / ("deepseek_v2_group_limited_bf16_sharded" if which == 1 else "qwen2_f32")
        dst = SCRATCH / f"folder-{which}"
        shutil.copytree(src, dst)
        assets = FIXTURES.parent / "assets" / "deepseek-r1-distill-qwen"
        for name in FILES[2:]:
            shutil.copy(assets / name, dst / name)
        FOLDERS[which] = dst
    return FOLDERS[which]


def test_one_input(data: bytes) -> None:
    if len(data) < 1:
        return
    which = data[0] % len(FILES)
    folder = folder_for(1 if which == 1 else 0)
    target = folder / FILES[which]
    original = target.read_bytes() if target.exists() else None
    target.write_bytes(data[1:])
    try:
        model = r1lite.load(folder, threads=1, context=8)
        if model.tokenizer is not None and model.tokenizer.has_chat_template:
            model.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                                add_generation_prompt=True)
        model.logits([0])
    except ERRORS:
        pass
    finally:
        if original is None:
            target.unlink()
        else:
            target.write_bytes(original)


def seeds():
    out = []
    for i, name in enumerate(FILES):
        folder = folder_for(1 if i == 1 else 0)
        out.append(bytes([i]) + (folder / name).read_bytes())
    return out


if __name__ == "__main__":
    quiet()
    run(test_one_input, seeds)
