"""Importance matrices (r1lite/imatrix.py, the core's activation recorder, convert --imatrix).

Checked against llama.cpp where a build is at hand: llama-imatrix on the same model and text
gives the same sums, and llama-quantize --imatrix with the same file writes the bytes r1lite's
quantizers write."""

import struct
import subprocess

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, ROOT
from r1lite.formats.block_quantizers import quantize_blocks
from r1lite.formats.r1file import load_r1_file
from r1lite.imatrix import Imatrix, compute_imatrix, read_imatrix, write_imatrix
from test_block_quantizers import FORMATS, K_QUANTS, LLAMACPP, needs_llamacpp, write_gguf

gguf = pytest.importorskip("gguf")


def test_recording_is_off_by_default_and_counts_tokens_per_expert():
    m = r1lite.load(FIXTURES / "deepseek_v3_f32")
    core, c = m._core, m.config
    m.logits([1, 2, 3])
    assert core.activation_stats() == {}
    tokens = np.random.default_rng(0).integers(0, c["vocab_size"], 48)
    im = compute_imatrix(m, tokens, chunk=24, include_output=True)
    assert im.chunk_count == 2 and im.chunk_size == 24
    kept = core.activation_stats()  # recording stopped: the stats stay, and stop growing
    m.logits([1, 2, 3])
    assert all(kept[k][1] == v[1] for k, v in core.activation_stats().items())
    k = c["experts_per_token"]
    moe = [key for key in im.entries if key.endswith("ffn_gate_exps.weight")]
    assert moe
    for key in moe:
        sums, counts = im.entries[key]
        assert sums.shape == (c["num_experts"], c["hidden_size"])
        assert counts.sum() == 48 * k  # every token's k experts
        np.testing.assert_array_equal(sums[counts == 0], 0)
    sums, counts = im.entries["blk.0.attn_q_a.weight"]
    assert counts.tolist() == [48] and (sums > 0).all()
    # MLA's per-head matrices: llama.cpp's attn_k_b [H, C, dn], one count
    sums, counts = im.entries["blk.0.attn_k_b.weight"]
    assert sums.shape == (c["num_heads"], c["qk_nope_head_dim"]) and counts.tolist() == [48]
    assert "output.weight" in im.entries and "token_embd.weight" not in im.entries


def test_recorded_sums_are_the_squared_inputs():
    # blk.0's q/k/v read rmsnorm(embedding) * attn_norm: computed here from the weights.
    m = r1lite.load(FIXTURES / "llama_f16")
    from r1lite.formats.hf import load_hf_folder
    from r1lite.formats.tensors import as_f32, materialize

    _, tensors, _ = load_hf_folder(FIXTURES / "llama_f16")
    emb = as_f32(*materialize(tensors["tok_embd"])[:2])
    norm = as_f32(*materialize(tensors["layers.0.attn_norm"])[:2])
    tokens = [5, 9, 9, 40, 3, 77, 1, 2]
    x = emb[tokens].astype(np.float64)
    xn = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + m.config["norm_eps"]) * norm
    im = compute_imatrix(m, tokens, chunk=8)
    sums, counts = im.entries["blk.0.attn_q.weight"]
    assert counts.tolist() == [8]
    np.testing.assert_allclose(sums[0], (xn * xn).sum(axis=0), rtol=1e-5)


def test_file_round_trip_legacy_and_bad_files(tmp_path):
    rng = np.random.default_rng(1)
    im = Imatrix({"blk.0.ffn_up.weight": (rng.random((1, 256), np.float32), np.array([7], np.float32)),
                  "blk.0.ffn_up_exps.weight": (rng.random((3, 256), np.float32), np.array([2, 0, 5], np.float32))},
                 ["calib.txt"], 3, 64)
    path = write_imatrix(tmp_path / "a.gguf", im)
    back = read_imatrix(path)
    assert (back.datasets, back.chunk_count, back.chunk_size) == (["calib.txt"], 3, 64)
    for key, (sums, counts) in im.entries.items():
        np.testing.assert_array_equal(back.entries[key][0], sums)
        np.testing.assert_array_equal(back.entries[key][1], counts)
    # the gguf package reads it as llama.cpp's layout: in_sum2 [n_mat, cols], counts [n_mat, 1]
    r = gguf.GGUFReader(str(path))
    shapes = {t.name: list(t.shape) for t in r.tensors}
    assert shapes["blk.0.ffn_up_exps.weight.in_sum2"] == [256, 3]
    assert shapes["blk.0.ffn_up_exps.weight.counts"] == [1, 3]
    w = back.weights("blk.0.ffn_up_exps.weight")
    np.testing.assert_allclose(w[0], im.entries["blk.0.ffn_up_exps.weight"][0][0] / 2)
    np.testing.assert_array_equal(w[1], 1)  # an expert no token reached: 1, as llama-quantize
    cfg = {"num_experts": 3}
    np.testing.assert_allclose(back.importance_for("layers.0.experts.2.w_up", (64, 256), cfg),
                               im.entries["blk.0.ffn_up_exps.weight"][0][2] / 5, rtol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        back.importance_for("layers.0.w_up", (64, 512), cfg)

    # legacy .dat: name, ncall, values (mean squares times ncall)
    vals = rng.random(256).astype(np.float32)
    name = b"blk.0.ffn_up.weight"
    dat = tmp_path / "imatrix.dat"
    dat.write_bytes(struct.pack("<ii", 1, len(name)) + name + struct.pack("<ii", 4, 256) + vals.tobytes()
                    + struct.pack("<ii", 9, 5) + b"x.txt")
    leg = read_imatrix(dat)
    np.testing.assert_allclose(leg.weights("blk.0.ffn_up.weight")[0], vals / 4)
    assert (leg.chunk_count, leg.datasets) == (9, ["x.txt"])

    for bad in (path.read_bytes()[:100], b"\x05\x00\x00\x00garbage", b"GGUF" + b"\xff" * 40):
        p = tmp_path / "bad.gguf"
        p.write_bytes(bad)
        with pytest.raises(ValueError, match="not a valid imatrix"):
            read_imatrix(p)


def model_gguf(path, hidden=256, ffn=512, vocab=320, seed=0):
    """A one-layer llama GGUF (f32) with widths the K-quants' 256-value blocks divide."""
    rng = np.random.default_rng(seed)
    cfg = {"hidden_size": hidden, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2, "head_dim": hidden // 4}
    kv = 2 * hidden // 4

    def mat(r, c):
        return (rng.standard_t(3, (r, c)) * 0.02).astype(np.float32)

    t = {"token_embd.weight": mat(vocab, hidden), "output_norm.weight": np.ones(hidden, np.float32),
         "output.weight": mat(vocab, hidden), "blk.0.attn_norm.weight": np.ones(hidden, np.float32),
         "blk.0.attn_q.weight": mat(hidden, hidden), "blk.0.attn_k.weight": mat(kv, hidden),
         "blk.0.attn_v.weight": mat(kv, hidden), "blk.0.attn_output.weight": mat(hidden, hidden),
         "blk.0.ffn_norm.weight": np.ones(hidden, np.float32), "blk.0.ffn_gate.weight": mat(ffn, hidden),
         "blk.0.ffn_up.weight": mat(ffn, hidden), "blk.0.ffn_down.weight": mat(hidden, ffn)}
    write_gguf(path, t, cfg, ffn)
    return t


def random_imatrix(tensors, skip=()):
    rng = np.random.default_rng(7)
    entries = {}
    for name, w in tensors.items():
        if name.startswith("blk.") and w.ndim == 2 and name not in skip:
            sums = (rng.standard_normal(w.shape[1]) ** 2 * 40).astype(np.float32)
            entries[name] = (sums[None], np.array([20], np.float32))
    return Imatrix(entries, ["random"], 1, 20)


def test_convert_uses_the_imatrix_and_names_what_it_lacks(tmp_path, capsys):
    src = tmp_path / "m.gguf"
    t = model_gguf(src)
    imx = write_imatrix(tmp_path / "i.gguf", random_imatrix(t, skip={"blk.0.ffn_down.weight"}))
    plain = load_r1_file(r1lite.convert(src, tmp_path / "plain.r1", "q4_k_m"))[1]
    capsys.readouterr()
    weighted = load_r1_file(r1lite.convert(src, tmp_path / "w.r1", "q4_k_m", imatrix=imx))[1]
    err = capsys.readouterr().err
    assert "no entry for 2 matrices" in err and "layers.0.w_down" in err and "lm_head" in err
    for name in ("layers.0.wq", "layers.0.w_up", "layers.0.wv"):
        assert not np.array_equal(plain[name][0], weighted[name][0]), name
    for name in ("layers.0.w_down", "lm_head", "tok_embd"):
        np.testing.assert_array_equal(plain[name][0], weighted[name][0])
    # an imatrix of another model: a clear error, no file
    other = write_imatrix(tmp_path / "o.gguf", random_imatrix(model_gguf(tmp_path / "o_src.gguf", hidden=512)))
    with pytest.raises(ValueError, match="does not fit"):
        r1lite.convert(src, tmp_path / "x.r1", "q4_k_m", imatrix=other)
    assert not (tmp_path / "x.r1").exists()


# ------------------------------------------------------------------------------------------------
# llama.cpp (skipped without a build)


def run_llama(tool, *args):
    env = {"LD_LIBRARY_PATH": str(LLAMACPP)}
    r = subprocess.run([str(LLAMACPP / tool), *map(str, args)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@needs_llamacpp
def test_same_sums_as_llama_imatrix(tmp_path):
    # A small qwen2 model with the R1-Distill tokenizer (f32, so both compute in f32), 4 chunks
    # of 64 tokens of README.md. Measured: the same entries, counts and chunk metadata, every
    # sum within 7e-7 of llama.cpp's (relative to the entry's largest).
    from gguf_write import write_gguf as write_qwen2
    from r1lite.config import normalize_hf_config
    from r1lite.formats.tensors import expected_tensors

    raw = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
           "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 512,
           "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
           "bos_token_id": 151646, "eos_token_id": 151643}
    cfg = normalize_hf_config(raw, "tiny")
    rng = np.random.default_rng(0)
    tensors = {name: ((1 + 0.1 * rng.standard_normal(shape)) if kind == "f32" else
                      0.05 * rng.standard_normal(shape)).astype(np.float32)
               for name, (shape, kind) in expected_tensors(cfg).items()}
    model = tmp_path / "tiny.gguf"
    write_qwen2(model, cfg, tensors)
    text = tmp_path / "text.txt"
    text.write_text((ROOT / "README.md").read_text()[:6000])
    ours, theirs = tmp_path / "r1.imatrix.gguf", tmp_path / "llama.imatrix.gguf"
    run_llama("llama-imatrix", "-m", model, "-f", text, "-o", theirs, "-c", 64, "--chunks", 4, "-t", 2)
    from r1lite.cli import main

    assert main(["imatrix", str(model), str(text), "-o", str(ours), "--chunk", "64", "--chunks", "4"]) == 0
    a, b = read_imatrix(ours), read_imatrix(theirs)
    assert sorted(a.entries) == sorted(b.entries) and len(a.entries) == 14
    assert (a.chunk_count, a.chunk_size) == (b.chunk_count, b.chunk_size) == (4, 64)
    for key in a.entries:
        (sa, ca), (sb, cb) = a.entries[key], b.entries[key]
        np.testing.assert_array_equal(ca, cb)
        assert np.abs(sa - sb).max() <= 2e-6 * np.abs(sb).max(), key


@needs_llamacpp
@pytest.mark.parametrize("fmt", K_QUANTS)
def test_llama_quantize_with_the_imatrix_writes_our_bytes(fmt, tmp_path):
    # llama-quantize --pure --imatrix FILE (a file r1lite wrote): every tensor it quantized
    # with the imatrix, read back, equals quantize_blocks with that file's weights; and
    # r1lite's own GGUF-reading of the file the quantizer uses agrees.
    src, dst, imx = tmp_path / "m.gguf", tmp_path / "q.gguf", tmp_path / "i.gguf"
    t = model_gguf(src)
    im = random_imatrix(t)
    write_imatrix(imx, im)
    run_llama("llama-quantize", "--pure", "--imatrix", imx, src, dst, FORMATS[fmt]["gguf_name"], 1)
    back = read_imatrix(imx)
    n = 0
    for tensor in gguf.GGUFReader(str(dst)).tensors:
        if tensor.name not in im.entries:
            continue
        w = t[tensor.name]
        theirs = np.asarray(tensor.data, np.uint8).reshape(w.shape[0], -1)
        ours = quantize_blocks(fmt, w, importance=back.weights(tensor.name)[0])
        np.testing.assert_array_equal(ours, theirs, err_msg=tensor.name)
        n += 1
    assert n == 7
