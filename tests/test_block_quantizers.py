"""r1lite's encoders for GGUF's block formats (formats/block_quantizers.py) and the quantization
recipes (recipes.py).

The encoders are checked against three independent readings: the `gguf` package's dequantizer
and the core's reference dequantizer decode every encoder's blocks to the same numbers; the
`gguf` package's quantizers (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: the ones it implements) give the same
bytes; and, where a llama.cpp build is at hand (LLAMACPP_HOME, or ~/.cache/llama.cpp-peer/build),
ggml's own reference quantizers give the same bytes for every format (called directly through
libggml-base), and a file llama-quantize writes decodes with the same error. The recipes are
checked against llama-quantize's own choice of types (--dry-run) on small llama-shaped models.
"""

import ctypes
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import llamacpp_bin
from r1lite import _core
from r1lite.config import normalize_hf_config
from r1lite.formats.block_quantizers import _ENCODERS, BLOCK_SIZES, READ_ONLY, quantize_blocks
from r1lite.formats.blocks import BLOCK_DTYPES
from r1lite.formats.names import gguf_name
from r1lite.formats.tensors import expected_tensors
from r1lite.recipes import RECIPES, fallback_format, tensor_formats

gguf = pytest.importorskip("gguf")

FORMATS = {f["name"]: f for f in _core.weight_formats()}
ENCODED = sorted(set(BLOCK_SIZES) - READ_ONLY)
IQ2 = ["iq2_xxs", "iq2_xs", "iq2_s"]  # r1lite's own search, not ggml's: tests/test_iq2_quantizers.py
K_QUANTS = ["q2_k", "q3_k", "q4_k", "q5_k", "q6_k"]


def gguf_type(fmt):
    return getattr(gguf.GGMLQuantizationType, FORMATS[fmt]["gguf_name"])


def weights(kind: str, rows: int = 64, cols: int = 1024, seed: int = 0) -> np.ndarray:
    """Test matrices: "normal" N(0, 1); "heavy" Student-t with 3 degrees of freedom (outliers
    like real checkpoints' weights), scaled as a real layer's."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((rows, cols)).astype(np.float32)
    return (rng.standard_t(3, (rows, cols)) * 0.02).astype(np.float32)


def rel_rms(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2)))


def decode(fmt: str, raw: np.ndarray, shape) -> np.ndarray:
    return _core.dequantize_blocks(fmt, np.ascontiguousarray(raw).ravel()).reshape(shape)


def test_every_block_format_of_the_table_has_an_encoder():
    blocks = {name for name, f in FORMATS.items() if f["layout"] == "blocks"}
    assert set(BLOCK_SIZES) == blocks == set(BLOCK_DTYPES)
    assert set(_ENCODERS) == blocks - READ_ONLY
    for fmt, block in BLOCK_SIZES.items():
        assert FORMATS[fmt]["block"] == block, fmt


def test_a_read_only_format_is_refused_by_name():
    assert READ_ONLY
    for fmt in READ_ONLY:
        with pytest.raises(ValueError, match=f"no block quantizer for format '{fmt}'"):
            quantize_blocks(fmt, np.zeros((1, 256), np.float32))


# Relative RMS error (RMS of the error / RMS of the weights) on weights(kind) (64 x 1024), as
# measured; the test allows 2% more. llama.cpp's reference quantizers (ggml_quantize_chunk in
# libggml-base, what llama-quantize runs without an importance matrix) write the same bytes on
# this data (test_bit_exact_with_ggml_reference_quantizers), so they measure the same errors.
#                normal   heavy (t3)
ERROR_BOUNDS = {
    "gguf_q8_0": (0.00537, 0.00841),
    "gguf_q4_0": (0.0862, 0.1291),
    "q4_1": (0.0782, 0.1007),
    "q5_0": (0.0428, 0.0665),
    "q5_1": (0.0380, 0.0489),
    "iq4_nl": (0.0765, 0.1018),
    "iq4_xs": (0.0770, 0.1029),
    "q2_k": (0.2961, 0.3509),
    "q3_k": (0.1515, 0.1920),
    "q4_k": (0.0715, 0.0935),
    "q5_k": (0.0363, 0.0473),
    "q6_k": (0.0178, 0.0257),
    # the i-quants' decoded bytes, the fit scaled by its de-shrinking factor (iq2_quantizers'
    # step 5: 1.06 / 1.05 / 1.035, for perplexity, at some RMS error; the fit alone measured
    # 0.3360 / 0.4730, 0.2906 / 0.3758, 0.2429 / 0.3579)
    "iq2_xxs": (0.3463, 0.4988),
    "iq2_xs": (0.2987, 0.3928),
    "iq2_s": (0.2484, 0.3695),
}


@pytest.mark.parametrize("kind", ["normal", "heavy"])
@pytest.mark.parametrize("fmt", ENCODED)
def test_encoded_blocks_decode_alike_and_within_the_error_bound(fmt, kind):
    w = weights(kind)
    raw = quantize_blocks(fmt, w)
    assert raw.dtype == np.uint8
    assert raw.shape == (w.shape[0], w.shape[1] // FORMATS[fmt]["block"] * FORMATS[fmt]["block_bytes"])
    ours = decode(fmt, raw, w.shape)
    theirs = np.asarray(gguf.quants.dequantize(raw, gguf_type(fmt)), np.float32).reshape(w.shape)
    np.testing.assert_array_equal(ours, theirs)
    bound = ERROR_BOUNDS[fmt][kind == "heavy"] * 1.02
    assert rel_rms(ours, w) <= bound, (fmt, kind, rel_rms(ours, w))


@pytest.mark.parametrize("fmt", ["gguf_q8_0", "gguf_q4_0", "q4_1", "q5_0", "q5_1"])
def test_bit_exact_with_the_gguf_package(fmt):
    # ggml's roundings: q8_0 rounds halves away from zero (roundf), the others truncate
    # x*id + 8.5 (16.5, 0.5); values on exact halves and all-zero/constant blocks included
    w = weights("heavy", 32, 512, seed=3)
    w[0] = np.repeat(np.arange(-8, 8, dtype=np.float32) + 0.5, 32)
    w[1, :64] = 0
    w[2, :32] = 0.25
    w[3] = np.round(w[3] * 1000) / 8
    np.testing.assert_array_equal(quantize_blocks(fmt, w), gguf.quants.quantize(w, gguf_type(fmt)))


@pytest.mark.parametrize("fmt", ENCODED)
def test_special_blocks_decode_sanely(fmt):
    rows, cols = 6, 512
    w = np.zeros((rows, cols), np.float32)
    w[1] = 0.5  # constant
    w[2] = -0.25
    w[3, ::37] = 1.0  # spikes in zeros
    w[4] = np.linspace(-1e-3, 1e-3, cols)  # small (f16 scales: much smaller ones flush to zero)
    w[5] = weights("normal", 1, cols)[0]
    w[5, 7] = 40.0  # an outlier
    got = decode(fmt, quantize_blocks(fmt, w), w.shape)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[0], 0)
    scale = np.abs(w).max(axis=1, keepdims=True)
    # no value further off than a few quantization steps of its row's largest
    assert (np.abs(got - w) <= 0.6 * scale).all(), fmt
    if fmt not in ("q2_k", "q3_k"):
        assert np.abs(got[1:3] - w[1:3]).max() <= 0.05, fmt  # constants come back closely


@pytest.mark.parametrize("fmt", ["q4_k", "gguf_q8_0"])
def test_a_width_the_blocks_do_not_divide_is_refused(fmt):
    with pytest.raises(ValueError, match=f"{fmt}: width 200 is not a multiple"):
        quantize_blocks(fmt, np.zeros((2, 200), np.float32))
    with pytest.raises(ValueError, match="no block quantizer"):
        quantize_blocks("q7_k", np.zeros((2, 256), np.float32))
    with pytest.raises(ValueError, match="not finite"):
        quantize_blocks(fmt, np.full((1, 256), np.nan, np.float32))


def test_threads_do_not_change_the_bytes():
    w = weights("heavy", 300, 512)
    for fmt in ("q4_k", "q3_k", "gguf_q4_0"):
        one = quantize_blocks(fmt, w, threads=1)
        np.testing.assert_array_equal(quantize_blocks(fmt, w, threads=3), one)
        # row by row: the blocks do not depend on their neighbours
        np.testing.assert_array_equal(quantize_blocks(fmt, w[17:18]), one[17:18])
    assert quantize_blocks("q6_k", np.zeros((0, 256), np.float32)).shape == (0, 210)


# ------------------------------------------------------------------------------------------------
# llama.cpp (skipped without a build)


LLAMACPP = llamacpp_bin()
needs_llamacpp = pytest.mark.skipif(LLAMACPP is None, reason="no llama.cpp build (LLAMACPP_HOME)")


def ggml_reference(fmt: str, w: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:
    """ggml's own quantizer (ggml_quantize_chunk, without an importance matrix: the *_ref
    functions llama-quantize runs; with qw [cols]: its quant_weights) on w."""
    lib = ctypes.CDLL(str(LLAMACPP / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    t = int(gguf_type(fmt))
    lib.ggml_quantize_init(t)
    rows, cols = w.shape
    w = np.ascontiguousarray(w, np.float32)
    out = np.zeros((rows, cols // FORMATS[fmt]["block"] * FORMATS[fmt]["block_bytes"]), np.uint8)
    qw = None if qw is None else np.ascontiguousarray(qw, np.float32)
    lib.ggml_quantize_chunk(t, w.ctypes.data, out.ctypes.data, 0, rows, cols,
                            None if qw is None else qw.ctypes.data)
    return out


@needs_llamacpp
@pytest.mark.parametrize("kind", ["normal", "heavy"])
@pytest.mark.parametrize("fmt", sorted(set(ENCODED) - set(IQ2)))
def test_bit_exact_with_ggml_reference_quantizers(fmt, kind):
    # Measured on llama.cpp 0.25.3 (ggml), a native -O3 build: every block of every format
    # identical, random, heavy-tailed and special blocks alike. (The K-quant and IQ4 scale
    # searches compare float sums; our sums run in ggml's order, so the choices agree.)
    w = weights(kind, 96, 1024, seed=11)
    w[0, :256] = 0
    w[1, :256] = 0.5
    w[2, :300] = -0.125
    w[3, ::41] = 3.0
    np.testing.assert_array_equal(quantize_blocks(fmt, w), ggml_reference(fmt, w))


def importance(cols: int, seed: int = 3) -> np.ndarray:
    """An importance matrix's weights: mean squares of activations (some columns never active)."""
    qw = (np.random.default_rng(seed).standard_normal(cols) ** 2 * 2 + 0.01).astype(np.float32)
    qw[:16] = 0
    return qw


@needs_llamacpp
@pytest.mark.parametrize("kind", ["normal", "heavy"])
@pytest.mark.parametrize("fmt", K_QUANTS)
def test_bit_exact_with_ggml_quantizers_given_an_importance_matrix(fmt, kind):
    # ggml_quantize_chunk with quant_weights (what llama-quantize --imatrix runs: the weighted
    # make_qkx3_quants / make_qp_quants / make_qx_quants paths). Measured: every block identical.
    w = weights(kind, 96, 1024, seed=11)
    w[0, :256] = 0
    w[1, :256] = 0.5
    w[2, :300] = -0.125
    w[3, ::41] = 3.0
    qw = importance(1024)
    ours = quantize_blocks(fmt, w, importance=qw)
    np.testing.assert_array_equal(ours, ggml_reference(fmt, w, qw))
    assert not np.array_equal(ours, quantize_blocks(fmt, w))  # the weights changed something


@pytest.mark.parametrize("fmt", K_QUANTS)
def test_importance_lowers_the_weighted_error_and_groups_split_rows(fmt):
    w = weights("heavy", 64, 512, seed=2)
    qw = importance(512, seed=4)
    plain, weighted = (decode(fmt, quantize_blocks(fmt, w, importance=q), w.shape) for q in (None, qw))
    err = [float(np.sum(qw * (d - w) ** 2)) for d in (plain, weighted)]
    assert err[1] < err[0], (fmt, err)
    # [groups, cols]: each equal group of rows (a head of MLA's matrices) with its own weights
    qw2 = np.stack([qw, importance(512, seed=9)])
    both = quantize_blocks(fmt, w, importance=qw2)
    np.testing.assert_array_equal(both[:32], quantize_blocks(fmt, w[:32], importance=qw2[0]))
    np.testing.assert_array_equal(both[32:], quantize_blocks(fmt, w[32:], importance=qw2[1]))
    with pytest.raises(ValueError, match="importance"):
        quantize_blocks(fmt, w, importance=qw[:256])
    # formats without a weighted path ignore it
    np.testing.assert_array_equal(quantize_blocks("gguf_q8_0", w, importance=qw), quantize_blocks("gguf_q8_0", w))


def write_gguf(path: Path, tensors: dict, cfg: dict, ffn: int) -> None:
    """A llama-architecture GGUF with these tensors (GGUF names) and the hyperparameters
    llama-quantize reads."""
    wr = gguf.GGUFWriter(str(path), "llama")
    wr.add_context_length(256)
    wr.add_embedding_length(cfg["hidden_size"])
    wr.add_block_count(cfg["num_layers"])
    wr.add_feed_forward_length(ffn)
    wr.add_head_count(cfg["num_heads"])
    wr.add_head_count_kv(cfg["num_kv_heads"])
    wr.add_rope_dimension_count(cfg["head_dim"])
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_file_type(0)
    for name, arr in tensors.items():
        wr.add_tensor(name, arr)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


@needs_llamacpp
@pytest.mark.parametrize("fmt", K_QUANTS)
def test_error_matches_a_file_llama_quantize_writes(fmt, tmp_path):
    # The same f32 matrix through llama-quantize --pure: its blocks (read back with
    # GGUFReader) decode with the error ours do. Measured: the same bytes, so the same error.
    w = weights("heavy", 64, 1024, seed=5)
    cfg = {"hidden_size": 1024, "num_layers": 1, "num_heads": 4, "num_kv_heads": 4, "head_dim": 256}
    src, dst = tmp_path / "f32.gguf", tmp_path / "q.gguf"
    write_gguf(src, {"blk.0.ffn_up.weight": w}, cfg, 64)
    run = subprocess.run([str(LLAMACPP / "llama-quantize"), "--pure", str(src), str(dst),
                          FORMATS[fmt]["gguf_name"], "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (t,) = gguf.GGUFReader(str(dst)).tensors
    assert t.tensor_type == gguf_type(fmt)
    theirs = np.asarray(t.data, np.uint8).reshape(w.shape[0], -1)
    ours = quantize_blocks(fmt, w)
    e_ours, e_theirs = rel_rms(decode(fmt, ours, w.shape), w), rel_rms(decode(fmt, theirs, w.shape), w)
    assert e_ours <= 1.02 * e_theirs, (fmt, e_ours, e_theirs)
    assert (ours == theirs).all(axis=1).mean() >= 0.99, fmt


# ------------------------------------------------------------------------------------------------
# recipes


def llama_config(layers=16, hidden=256, ffn=768, heads=4, kv_heads=1, tied=False, vocab=320):
    return normalize_hf_config({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "intermediate_size": ffn, "max_position_embeddings": 256,
        "tie_word_embeddings": tied, "rms_norm_eps": 1e-5,
    }, "test config")


def deepseek_config(experts=8):
    return normalize_hf_config({
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 320,
        "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
        "intermediate_size": 512, "moe_intermediate_size": 256, "n_routed_experts": experts,
        "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1, "n_group": 1,
        "topk_group": 1, "q_lora_rank": 256, "kv_lora_rank": 256, "qk_nope_head_dim": 64,
        "qk_rope_head_dim": 32, "v_head_dim": 64, "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
    }, "test config")


CONFIGS = {
    "llama": llama_config(),
    "llama_tied_odd_widths": llama_config(layers=9, hidden=288, ffn=800, heads=4, kv_heads=2, tied=True),
    "deepseek": deepseek_config(),
}


def bits(fmt: str) -> float:
    return FORMATS[fmt]["bits_per_weight"]


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("quant", list(RECIPES))
def test_every_tensor_gets_a_format_the_core_has(config, quant):
    from r1lite.recipes import applies

    cfg = CONFIGS[config]
    if not applies(cfg, quant):  # the expert-aware mixes on a dense model
        with pytest.raises(ValueError, match="mixture-of-experts"):
            tensor_formats(cfg, quant)
        return
    specs = expected_tensors(cfg)
    formats = tensor_formats(cfg, quant)
    assert set(formats) == set(specs)
    for name, fmt in formats.items():
        shape, kind = specs[name]
        assert fmt in FORMATS, (name, fmt)
        if kind == "f32":
            assert fmt == "f32", name
            continue
        f = FORMATS[fmt]
        if f["layout"] == "blocks":
            assert shape[-1] % f["block"] == 0, (name, shape, fmt)  # the blocks fit the width
    head = "lm_head" if "lm_head" in specs else "tok_embd"
    if quant not in ("f32", "bf16", "f16"):
        assert bits(formats[head]) >= 6, (quant, formats[head])  # llama.cpp: Q6_K at least
    else:
        assert formats[head] == quant


def test_recipe_details():
    cfg = CONFIGS["llama"]  # 16 layers, widths 256 (ffn_down 768): K blocks fit everywhere
    q4 = tensor_formats(cfg, "q4_0")
    assert q4["lm_head"] == "q8_0" and q4["tok_embd"] == "q4_0" and q4["layers.3.wq"] == "q4_0"
    tied = CONFIGS["llama_tied_odd_widths"]
    assert tensor_formats(tied, "q4_0")["tok_embd"] == "q8_0"
    m = tensor_formats(cfg, "q4_k_m")
    more = [i for i in range(16) if m[f"layers.{i}.wv"] == "q6_k"]
    assert more == [0, 1, 4, 7, 10, 13, 14, 15]  # use_more_bits: first/last eighth, every third
    assert [i for i in range(16) if m[f"layers.{i}.w_down"] == "q6_k"] == more
    assert m["layers.5.wv"] == m["layers.5.w_gate"] == m["tok_embd"] == "q4_k"
    assert m["lm_head"] == "q6_k"
    assert tensor_formats(cfg, "q6_k")["layers.0.wv"] == "q6_k"
    q2 = tensor_formats(cfg, "q2_k")
    assert q2["layers.5.wv"] == "q4_k"  # 4 query heads per kv head
    assert q2["layers.5.wo"] == q2["layers.5.w_down"] == "q3_k" and q2["layers.5.wq"] == "q2_k"
    q3 = tensor_formats(cfg, "q3_k_m")
    assert [q3[f"layers.{i}.wv"] for i in (0, 1, 2)] == ["q5_k", "q5_k", "q4_k"]
    assert [q3[f"layers.{i}.w_down"] for i in (0, 1)] == ["q5_k", "q4_k"]  # first 1/16
    assert q3["layers.1.wo"] == "q4_k" and q3["layers.1.wq"] == "q3_k"


def test_width_fallback():
    # hidden 288 (= 9 * 32): no 256-value block fits; ffn 800 (25 * 32): neither
    cfg = CONFIGS["llama_tied_odd_widths"]
    for quant, fb in [("q4_k_m", "q5_0"), ("q5_k_m", "q5_1"), ("q6_k", "gguf_q8_0"),
                      ("q3_k_m", "gguf_q4_0"), ("q2_k", "gguf_q4_0")]:
        formats = tensor_formats(cfg, quant)
        assert formats["tok_embd"] == "gguf_q8_0"  # the head: Q8_0 when Q6_K's blocks do not fit
        assert formats["layers.4.w_gate"] == fb, quant
    assert fallback_format("q4_k", 80) == "f16"  # not even 32 divides it
    for quant in ("iq2_xxs", "iq2_xs", "iq2_s"):  # i-quants: IQ4_NL, as llama.cpp
        formats = tensor_formats(cfg, quant)
        assert formats["tok_embd"] == "gguf_q8_0" and formats["layers.4.w_gate"] == "iq4_nl"
        wide = tensor_formats(CONFIGS["llama"], quant)
        assert wide["layers.4.w_gate"] == wide["layers.4.w_down"] == wide["layers.0.wv"] == quant
        assert wide["lm_head"] == "q6_k" and wide["tok_embd"] == "q4_k"
    assert fallback_format("q4_k", 512) == "q4_k" and fallback_format("q4_0", 80) == "q4_0"


def test_moe_and_mla_tensors():
    cfg = CONFIGS["deepseek"]  # 8 routed experts: llama.cpp's 8-expert rules
    m = tensor_formats(cfg, "q4_k_m")
    assert m["layers.2.w_uk_t"] == m["layers.2.w_uv"] == "gguf_q8_0"  # attn_kv_b, 8 experts
    assert m["layers.2.wo"] == "q5_k"
    # 4 layers: use_more_bits picks layers 2 ((2 - 0) % 3 == 2) and 3 (the last eighth)
    assert m["layers.2.experts.5.w_down"] == m["layers.3.shared.w_down"] == "q6_k"
    assert m["layers.0.w_down"] == m["layers.1.shared.w_down"] == m["layers.1.experts.7.w_down"] == "q4_k"
    assert m["layers.2.wkv_a"] == m["layers.2.wq_a"] == m["layers.2.experts.1.w_up"] == "q4_k"
    assert m["layers.1.router"] == "f32"
    m = tensor_formats(deepseek_config(experts=16), "q4_k_m")
    # the MLA halves keep r1lite's widths: w_uk_t's is qk_nope_head_dim (64), so its Q4_K
    # falls back to Q5_0 and its Q6_K (a more-bits layer) to Q8_0; w_uv's is kv_lora_rank
    assert m["layers.0.w_uk_t"] == "q5_0" and m["layers.0.w_uv"] == "q4_k"
    assert m["layers.3.w_uk_t"] == "gguf_q8_0" and m["layers.3.w_uv"] == "q6_k"
    assert m["layers.2.wo"] == m["layers.2.wq_b"] == "q4_k"


def test_unknown_recipe_lists_the_recipes():
    with pytest.raises(ValueError, match="q4_k_m.*q2_k|q2_k.*q4_k_m"):
        tensor_formats(CONFIGS["llama"], "q4_k_s")
    assert all(isinstance(v, str) and v for v in RECIPES.values())


DRY_RUN_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+-.*\((\w+)\)\s*$")


@needs_llamacpp
@pytest.mark.parametrize("config", ["llama", "llama_tied_odd_widths"])
@pytest.mark.parametrize("quant", ["q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"])
def test_recipes_choose_what_llama_quantize_chooses(config, quant, tmp_path):
    # llama-quantize --dry-run on a small llama-shaped GGUF of the same tensors: the type it
    # picks for every matrix is the format the recipe picks
    cfg = CONFIGS[config]
    specs = expected_tensors(cfg)
    rng = np.random.default_rng(0)
    tensors = {gguf_name(name): (rng.standard_normal(shape) * 0.02).astype(np.float32)
               for name, (shape, _) in specs.items()}
    src = tmp_path / "f32.gguf"
    write_gguf(src, tensors, cfg, cfg["intermediate_size"])
    run = subprocess.run([str(LLAMACPP / "llama-quantize"), "--dry-run", str(src), str(tmp_path / "q.gguf"),
                          quant.upper(), "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    chosen = {}
    for line in (run.stdout + run.stderr).splitlines():
        if m := DRY_RUN_LINE.match(line.strip()):
            chosen[m.group(1)] = m.group(2).upper()
    formats = tensor_formats(cfg, quant)
    checked = 0
    for name, (_, kind) in specs.items():
        if kind == "matrix":
            want = chosen[gguf_name(name)]
            assert FORMATS[formats[name]]["gguf_name"].upper() == want, (name, formats[name], want)
            checked += 1
    assert checked == sum(kind == "matrix" for _, kind in specs.values())
