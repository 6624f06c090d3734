"""GGUF files as people download them (llama.cpp's K-quant mixes and the rest of the format table),
computed on in their own blocks: the demo model (SmolLM2-135M, a real model) requantized the way
llama-quantize does it (tests/gguf_requant.py), then r1lite's perplexity on a fixed text against
an independent reading of the same blocks (the `gguf` package's numpy dequantizer, in f32 through
r1lite's f32 path, which tests/test_oracle_*.py prove against transformers) and, where torch is
installed (CI), against transformers itself on the same file (it dequantizes GGUF with the `gguf`
package too). Also: split files, mixed-format row moves, and bad files."""

import contextlib
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, llamacpp_bin
from gguf_requant import copy_metadata, recipe_formats, requantize_gguf
from r1lite.errors import ModelFormatError, UnsupportedModelError
from r1lite.formats.gguf import load_gguf
from r1lite.loader import make_core
from r1lite.model import Model
from r1lite.quant import TABLE

gguf = pytest.importorskip("gguf")
sys.path.insert(0, str(FIXTURES.parent.parent / "tools"))
from perplexity import nll_windows  # noqa: E402

TEXT = Path("/usr/share/common-licenses/GPL-3")
CTX = 512
# The mixes users download (Q4_K_M above all), and formats that appear in them as fallbacks where
# a width is not a multiple of 256 (the demo's hidden size is 576): q5_0 (q4_k_m), q5_1 (q5_k_m),
# gguf_q4_0 (q3_k_m, q2_k), iq4_nl (iq4_xs); the demo file itself is Q4_1 with a Q8_0 embedding.
BLOCKS_BOUND = 0.025  # |perplexity on the blocks / the f32 reading - 1| (see the test below)
RECIPES = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k", "iq4_xs"]


@pytest.fixture(scope="module")
def demo():
    from r1lite.resolve import demo_model_path

    return demo_model_path()


@pytest.fixture(scope="module")
def text_ids(demo):
    assert TEXT.is_file(), f"the perplexity text {TEXT} is missing on this machine"
    tok = r1lite.load(demo, context=CTX).tokenizer
    return tok.encode(TEXT.read_text())[:2 * CTX]


def _gguf_file(demo, folder, recipe):
    out = folder / f"demo-{recipe}.gguf"
    if not out.exists():
        if recipe == "iq4_xs":  # llama.cpp's IQ4_XS: iq4_xs everywhere it fits, iq4_nl elsewhere
            formats = {name: "iq4_xs" if cols % 256 == 0 else "iq4_nl"
                       for name, cols in _matrix_widths(demo).items()}
        else:
            formats = recipe_formats(demo, recipe)
        requantize_gguf(demo, out, formats)
    return out


def _matrix_widths(path):
    from r1lite.formats.gguf_reader import GGUFFile

    g = GGUFFile(path)
    return {n: int(t.shape[0]) for n, t in g.tensors.items() if len(t.shape) == 2}


def _dequantized_by_gguf(path, context):
    """The file's model with every tensor dequantized by the gguf package, on r1lite's f32 path."""
    config, tensors, meta = load_gguf(path)
    f32 = {}
    for name, (arr, fmt) in tensors.items():
        if fmt in ("f32", "f16", "bf16"):
            from r1lite.formats.tensors import as_f32

            f32[name] = (np.ascontiguousarray(as_f32(arr, fmt)), "f32")
        else:
            qtype = getattr(gguf.GGMLQuantizationType, TABLE[fmt]["gguf_name"])
            f32[name] = (np.ascontiguousarray(gguf.quants.dequantize(arr, qtype), np.float32), "f32")
    config = dict(config, context=context, kv_cache="f32")
    return Model(make_core(config, f32, 2, "cpu"), config, source=str(path))


def _perplexity(logits_fn, ids):
    total, count = nll_windows(logits_fn, ids, CTX)
    return math.exp(total / count)


@pytest.fixture(scope="module")
def files(demo, tmp_path_factory):
    return tmp_path_factory.mktemp("gguf-native")


@pytest.mark.parametrize("recipe", RECIPES)
def test_native_blocks_match_independent_readings(demo, files, text_ids, recipe):
    """Perplexity on 1024 tokens of the fixed text, r1lite on the file's blocks (int8 activations,
    as llama.cpp) against the f32 readings of the same blocks, by the gguf package through r1lite's
    f32 path and, where torch is installed (CI), by transformers: within 2.5%. Rounding activations
    to int8 is discontinuous, so float differences of 1e-7 between kernels (summation order) flip
    roundings that grow through the layers: the same file measures differently per ISA (1024
    tokens, r1lite above the f32 reading: q8_0 +0.05% AVX2 / -0.35% AVX-512, q6_k +0.61 / +0.26%,
    iq4_xs +1.88% AVX2, +1.15% with the AVX2 iq4_nl kernel's earlier summation order, +0.82%
    AVX-512, +0.54% scalar; q2_k..q5_k_m 0.25-0.77%). llama.cpp's own Q2_K / IQ4_XS / Q4_K_M /
    Q8_0 of this file sit 0.8 / 0.4 / 0.3 / 0.3% above its f32 copy of the same blocks; a wrong
    scale or lookup moves it by tens of percent."""
    path = _gguf_file(demo, files, recipe)
    m = r1lite.load(path, context=CTX)
    block_formats = {f for f in m.summary["tensor_formats"] if TABLE[f]["layout"] == "blocks"}
    assert block_formats, m.summary  # kept in blocks, not dequantized at load
    got = _perplexity(m.logits, text_ids)
    want = _perplexity(_dequantized_by_gguf(path, CTX).logits, text_ids)
    assert abs(got - want) <= BLOCKS_BOUND * want, (recipe, sorted(block_formats), got, want)
    _check_against_transformers(path, text_ids, got, want, BLOCKS_BOUND)


@contextlib.contextmanager
def _transformers_gguf_loading_cached():
    """transformers' GGUF loader parses the file's metadata twice (config, then weights: 7 s each
    for the demo's 49K-token vocabulary) and rebuilds the gguf package's tensor-name map once per
    module (400 times, 9 s); within one load both are the same, so they are memoized for it (the
    values read are unchanged)."""
    from unittest import mock

    readers = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real_reader(path, *args, **kwargs)
        return readers[key]

    real_reader = gguf.GGUFReader
    with mock.patch.object(gguf, "GGUFReader", reader), \
            mock.patch.object(gguf, "get_tensor_name_map", functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map)):
        yield


def _check_against_transformers(path, text_ids, got, want, bound):
    """Where torch is installed (CI): transformers' own reading of the file (it dequantizes GGUF
    with the gguf package) agrees with the f32 reading `want`, and r1lite's perplexity `got` is
    within `bound` of it."""
    try:
        import torch
        import transformers
    except ImportError:
        return
    with _transformers_gguf_loading_cached():
        hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                               dtype=torch.float32)

    def hf_logits(ids):
        with torch.no_grad():
            return hf(torch.tensor([ids])).logits[0].numpy()

    want_hf = _perplexity(hf_logits, text_ids)
    assert abs(want_hf - want) <= 1e-3 * want  # the two f32 readings agree
    assert abs(got - want_hf) <= bound * want_hf, (path.name, got, want_hf)


# llama.cpp's own i-quant files (r1lite does not write these formats yet): the demo in f16,
# an importance matrix from llama-imatrix on the fixed text, then llama-quantize. Its IQ2 / IQ3
# mixes keep ffn_down (1536 columns) at the i-quant and fall back to iq4_nl / q4_0 / q5_0 where
# 576 columns do not hold whole blocks of 256. llama.cpp's mix named IQ2_S is built on iq2_xs; the one on
# iq2_s is IQ2_M (some ffn_down at iq3_s). IQ3_M is the mix built on iq3_s, as IQ3_S is.
LLAMACPP = llamacpp_bin()
IQ_MIXES = {"IQ2_XXS": "iq2_xxs", "IQ2_XS": "iq2_xs", "IQ2_M": "iq2_s",  # llama.cpp's name -> format
            "IQ3_XXS": "iq3_xxs", "IQ3_S": "iq3_s", "IQ3_M": "iq3_s"}


@pytest.fixture(scope="module")
def llamacpp_f16(demo, files, text_ids):
    if LLAMACPP is None:
        pytest.skip("no llama.cpp build (LLAMACPP_HOME)")
    f16 = files / "demo-f16.gguf"
    requantize_gguf(demo, f16, {name: "f16" for name, cols in _matrix_widths(demo).items()})
    text = files / "imatrix-text.txt"
    text.write_text(TEXT.read_text()[:20000])
    imatrix = files / "imatrix.gguf"
    _llamacpp("llama-imatrix", "-m", f16, "-f", text, "-c", 128, "--chunks", 8, "-t", 2, "-o", imatrix)
    return f16, imatrix


def _llamacpp(tool, *args):
    env = dict(os.environ, LD_LIBRARY_PATH=str(LLAMACPP))
    run = subprocess.run([str(LLAMACPP / tool), *map(str, args)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


# transformers reads GGUF through the same gguf-package dequantizers as `want` above, so one file
# of each family shows the two f32 readings agree (each costs a transformers load and forward)
BY_TRANSFORMERS = ("IQ2_XXS", "IQ3_S", "IQ1_S")


@pytest.mark.parametrize("mix", IQ_MIXES)
def test_llamacpp_iquant_files_match_independent_readings(llamacpp_f16, files, text_ids, mix):
    """Perplexity on 1024 tokens, r1lite on the file's own blocks against the gguf package's f32
    reading of the same file (and transformers', for BY_TRANSFORMERS): within 1.5%, issue 20's bound
    (the K-quant test above explains why the int8 activations' noise can approach it)."""
    f16, imatrix = llamacpp_f16
    path = files / f"demo-{mix}.gguf"
    _llamacpp("llama-quantize", "--imatrix", imatrix, f16, path, mix, 2)
    m = r1lite.load(path, context=CTX)
    assert IQ_MIXES[mix] in m.summary["tensor_formats"], m.summary
    got = _perplexity(m.logits, text_ids)
    want = _perplexity(_dequantized_by_gguf(path, CTX).logits, text_ids)
    assert abs(got - want) <= 0.015 * want, (mix, got, want)
    if mix in BY_TRANSFORMERS:
        _check_against_transformers(path, text_ids, got, want, 0.015)


# llama.cpp's 1-bit mixes (IQ1_S, IQ1_M: the routed experts of the 1.58-bit R1 files), as made:
# ffn_down at the iq1 type after its first 3 layers at q2_k; the 576-column matrices fall back
# to iq4_nl, attn_v (q2_k in these mixes) to q4_0; the embedding q8_0.
IQ1_MIXES = {"IQ1_S": "iq1_s", "IQ1_M": "iq1_m"}  # llama.cpp's name -> format
# Measured on these files (1024 tokens): r1lite on the blocks +1.17% (IQ1_S, 57.15 vs 56.50) and
# +1.46% (IQ1_M, 46.17 vs 45.50) above the gguf package's f32 reading; llama.cpp's
# llama-perplexity (8 chunks of 512) +1.07% (51.80 vs 51.25) and +1.95% (44.23 vs 43.38) above
# its run of an f32 copy of the same blocks. Both runtimes round the activations of these
# matrices to int8 per 256, and at 1 bit that moves the demo's perplexity further than at 2.6-8
# bits (llama.cpp's Q2_K .. Q8_0 files: +0.3-0.8%, BENCHMARKS.md), so the bound is llama.cpp's
# own gap plus half a point.
IQ1_BOUND = 0.025


@pytest.mark.parametrize("mix", IQ1_MIXES)
def test_llamacpp_iq1_files_match_independent_readings(llamacpp_f16, files, text_ids, mix):
    """Perplexity on 1024 tokens, r1lite on the file's own blocks against the gguf package's f32
    reading of the same file: within IQ1_BOUND, the gap llama.cpp itself shows on these files."""
    f16, imatrix = llamacpp_f16
    path = files / f"demo-{mix}.gguf"
    _llamacpp("llama-quantize", "--imatrix", imatrix, f16, path, mix, 2)
    m = r1lite.load(path, context=CTX)
    assert IQ1_MIXES[mix] in m.summary["tensor_formats"], m.summary
    got = _perplexity(m.logits, text_ids)
    want = _perplexity(_dequantized_by_gguf(path, CTX).logits, text_ids)
    assert abs(got - want) <= IQ1_BOUND * want, (mix, got, want)
    if mix in BY_TRANSFORMERS:
        _check_against_transformers(path, text_ids, got, want, IQ1_BOUND)


def test_a_split_file_loads_from_its_first_part(demo, tmp_path):
    parts = requantize_gguf(demo, tmp_path / "demo.gguf", {}, split_max_tensors=100)
    assert [p.name for p in parts] == [f"demo-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    whole = r1lite.load(demo, context=64)
    split = r1lite.load(parts[0], context=64)
    assert split.summary["file_bytes"] == sum(p.stat().st_size for p in parts)
    ids = [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(split.logits(ids), whole.logits(ids))
    with pytest.raises(ModelFormatError, match="part 00002 of a split file; load the first part"):
        r1lite.load(parts[1])
    parts[2].rename(tmp_path / "elsewhere.gguf")
    with pytest.raises(ModelFormatError, match="demo-00003-of-00003.gguf is missing"):
        r1lite.load(parts[0])


def test_a_type_outside_the_table_is_named(demo, tmp_path):
    g = gguf.GGUFWriter(str(tmp_path / "tq2.gguf"), "llama")
    src = r1lite.formats.gguf_reader.GGUFFile(demo)
    copy_metadata(src, g)
    for name, t in src.tensors.items():
        arr, _ = src.raw(name)
        if name == "blk.0.ffn_down.weight":  # 576 x 1536 as TQ2_0 blocks (66 bytes per 256)
            g.add_tensor(name, np.zeros((576, 1536 // 256 * 66), np.uint8),
                         raw_dtype=gguf.GGMLQuantizationType.TQ2_0)
        else:
            g.add_tensor(name, np.ascontiguousarray(arr), raw_dtype=gguf.GGMLQuantizationType[t.type_name])
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()
    with pytest.raises(UnsupportedModelError, match=r"tq2\.gguf: tensor 'blk\.0\.ffn_down\.weight' has GGML type TQ2_0"):
        r1lite.load(tmp_path / "tq2.gguf")


def test_a_truncated_file_is_named(demo, tmp_path):
    data = demo.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:len(data) - 4096])
    with pytest.raises(ModelFormatError, match="cut.gguf"):
        r1lite.load(cut)
