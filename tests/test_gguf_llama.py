"""GGUF files of llama models as llama.cpp's converter writes them, against transformers' logits
of the same checkpoint: the q/k rows permuted for llama.cpp's rope, and llama3 rope scaling
stored as the per-frequency `rope_freqs` tensor instead of config keys. The writer below follows
llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute and its rope_freqs for rope_type llama3);
the oracle is transformers on the original checkpoint (tests/fixtures). That the writer means to
llama.cpp what it means here is checked by llama.cpp itself (tools/llamacpp_gguf_check.py: its
logits on these files are within 8e-4 of transformers' with rope_freqs, 1.17 off without)."""

import json
import math

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, rel_err
from gguf_write import add_model_header  # tools/, on the path through conftest
from r1lite.errors import ModelFormatError
from r1lite.formats.hf import load_hf_folder
from r1lite.formats.names import gguf_name
from r1lite.formats.tensors import as_f32, materialize

gguf = pytest.importorskip("gguf")


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: rotate-half pairs (j, j+d/2) -> adjacent."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_cpp_rope_freqs(raw: dict) -> np.ndarray:
    """The factors llama.cpp's converter writes for rope_type llama3: freq / factor is the
    scaled frequency."""
    p = raw["rope_parameters"]
    base, dim = p["rope_theta"], raw["head_dim"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high = p["factor"], p["low_freq_factor"], p["high_freq_factor"]
    old = p["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, np.float32)


def write_dense_gguf(folder, out, arch, *, permute_qk=False, extra=None):
    """The checkpoint in `folder` as llama.cpp's converter writes a dense `arch` GGUF: llama's
    q/k rows permuted (permute_qk), key_length = head_dim, `extra` tensors added."""
    cfg, tensors, _ = load_hf_folder(folder)
    w = gguf.GGUFWriter(str(out), arch)
    add_model_header(w, cfg)
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    for name, entry in tensors.items():
        arr = as_f32(*materialize(entry)[:2])
        if permute_qk and name.endswith((".wq", ".wk")):
            arr = llama_cpp_permute(arr, cfg["num_heads"] if name.endswith(".wq") else cfg["num_kv_heads"])
        w.add_tensor(gguf_name(name), np.ascontiguousarray(arr))
    for name, arr in (extra or {}).items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def write_llama_gguf(folder, out, *, rope_freqs=True):
    """rope_freqs: True writes llama.cpp's factors, False none, an array those values."""
    raw = json.loads((folder / "config.json").read_text())
    factors = llama_cpp_rope_freqs(raw) if rope_freqs is True else rope_freqs
    extra = {} if rope_freqs is False else {"rope_freqs.weight": factors}
    return write_dense_gguf(folder, out, "llama", permute_qk=True, extra=extra)


def test_llama3_gguf_with_rope_freqs_matches_transformers(tmp_path):
    folder = FIXTURES / "llama3_f32"
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(write_llama_gguf(folder, tmp_path / "llama3.gguf"), threads=2, kv_cache="f32")
    assert model.config["rope_kind"] == "default" and len(model.config["rope_freq_factors"]) == 10
    got = model.logits(oracle["tokens"])
    assert rel_err(got, oracle["logits"]) <= 1e-4
    np.testing.assert_array_equal(got.argmax(-1), oracle["logits"].argmax(-1))
    # the factors are what makes it llama3: without them the same weights give other logits
    plain = r1lite.load(write_llama_gguf(folder, tmp_path / "plain.gguf", rope_freqs=False), threads=2, kv_cache="f32")
    assert rel_err(plain.logits(oracle["tokens"]), oracle["logits"]) > 1e-2


def test_rope_freqs_survive_conversion(tmp_path):
    folder = FIXTURES / "llama3_f32"
    oracle = np.load(folder / "oracle.npz")
    out = r1lite.convert(write_llama_gguf(folder, tmp_path / "llama3.gguf"), tmp_path / "m.safetensors",
                         quant="f32", progress=False)
    assert rel_err(r1lite.load(out, threads=2, kv_cache="f32").logits(oracle["tokens"]), oracle["logits"]) <= 1e-4


def test_bad_rope_freqs_are_named(tmp_path):
    path = write_llama_gguf(FIXTURES / "llama3_f32", tmp_path / "bad.gguf", rope_freqs=np.ones(7, np.float32))
    with pytest.raises(ModelFormatError, match="rope_freqs.weight.*10 positive factors, got 7"):
        r1lite.load(path)
