"""r1lite's own quantizers for GGUF's 2-bit i-quants (formats/iq2_quantizers.py: iq2_xxs, iq2_xs,
iq2_s), checked against readers and quantizers that are not r1lite's:

- the `gguf` package's dequantizer decodes our bytes to exactly what the core's scalar
  dequantizer does, and the decoded signs are those of the input (but for the one value per
  group of 8 the parity rule of iq2_xxs / iq2_xs may flip);
- the error of the fit, importance-weighted, is strictly below a naive quantizer's (the nearest
  codebook entry at the scale that maps each sub-block's largest value to the largest magnitude), on
  gaussian rows and on the demo model's (SmolLM2-135M) ffn_down matrices under an importance
  matrix r1lite computes on it;
- where a llama.cpp build is at hand (its libggml-base), compared with llama.cpp's own quantizer's
  error (ggml_quantize_chunk, what llama-quantize runs) on the same data and importance. The
  encoder's least-squares fit (`fitted`: the decoded values without its de-shrinking factor, which
  trades ~5-8% more error for perplexity, see iq2_quantizers' step 5) must be at most
  LLAMA_FACTOR of it, the decoded bytes at most DECODED_FACTOR. Measured ratios (ours / llama.cpp's
  weighted squared error, fit | decoded; llama.cpp 0.25.3's libggml-base):

                 gaussian        demo ffn_down, layers 0 / 14 / 29
      iq2_xxs    0.919 | 0.994   0.919 / 0.927 / 0.760 | 1.001 / 1.005 / 0.865
      iq2_xs     0.900 | 0.969   0.879 / 0.898 / 0.752 | 0.949 / 0.964 / 0.857
      iq2_s      0.915 | 0.968   0.901 / 0.927 / 0.787 | 0.952 / 0.976 / 0.850

  Against the naive quantizer (the fit) the demo's ratios are 0.14-0.69.
"""

from pathlib import Path

import numpy as np
import pytest

from llamacpp_peer import ggml_base  # tools/, on the path through conftest
from r1lite import _core
from r1lite.formats import iq2_quantizers
from r1lite.formats.block_quantizers import quantize_blocks

gguf = pytest.importorskip("gguf")

FORMATS = ["iq2_xxs", "iq2_xs", "iq2_s"]
INFO = {f["name"]: f for f in _core.weight_formats()}
LLAMA_FACTOR = 0.97  # ours (the fit) / llama.cpp's weighted error at most (measured <= 0.927)
DECODED_FACTOR = 1.03  # ours (decoded, de-shrunk) / llama.cpp's at most (measured <= 1.006)


def gguf_decode(fmt: str, raw: np.ndarray, shape) -> np.ndarray:
    t = getattr(gguf.GGMLQuantizationType, INFO[fmt]["gguf_name"])
    return np.asarray(gguf.quants.dequantize(raw, t), np.float32).reshape(shape)


def core_decode(fmt: str, raw: np.ndarray, shape) -> np.ndarray:
    return _core.dequantize_blocks(fmt, np.ascontiguousarray(raw).ravel()).reshape(shape)


def werr(got, want, qw) -> float:
    """Importance-weighted squared error, relative to the weighted squared weights."""
    return float(np.sum(qw * (got - want) ** 2) / np.sum(qw * want ** 2))


def fitted(fmt: str, decoded: np.ndarray) -> np.ndarray:
    """The encoder's least-squares fit: the decoded values without the de-shrinking factor (its
    step 5), which scales every block alike and costs error by design; the search is judged on
    the fit, the stored bytes' error against llama.cpp's separately."""
    return decoded / np.float32(iq2_quantizers.DESHRINK[fmt])


def gaussian(rows=64, cols=1024, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def random_importance(cols, seed=1):
    """Mean squared activations: chi-square-like, a few columns dead, a few 50x the rest."""
    rng = np.random.default_rng(seed)
    qw = (rng.standard_normal((32, cols)) ** 2).mean(axis=0).astype(np.float32)
    qw[rng.choice(cols, cols // 64, replace=False)] *= 50
    qw[:8] = 0
    return qw


def naive(fmt: str, x: np.ndarray) -> np.ndarray:
    """The baseline: each sub-block's scale maps its largest |x| to the grid's largest magnitude
    (43), stored as the format stores scales; each group the entry nearest |x| / scale; the
    signs of x, for the parity formats with the smallest |x| of an odd group flipped."""
    grid = iq2_quantizers.grid(fmt)
    per = iq2_quantizers.GROUPS_PER_SUB[fmt] * 8
    B = x.size // 256
    sub = x.reshape(B, -1, per)
    sigma = np.abs(sub).max(axis=2) / 43
    d = (8 * sigma.max(axis=1) / 31).astype(np.float16).astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(np.rint((8 * sigma / np.where(d > 0, d, 1) - 1) / 2), 0, 15)
    s = (d * (2 * l + 1) / 8)[:, :, None]
    g = x.reshape(-1, 8)
    sign = np.where(g < 0, -1.0, 1.0)
    if fmt != "iq2_s":
        odd = np.nonzero((g < 0).sum(axis=1) % 2)[0]
        j = np.abs(g[odd]).argmin(axis=1)
        sign[odd, j] *= -1
    target = (np.abs(sub) / np.where(s > 0, s, 1)).reshape(-1, 8)
    dist = (grid * grid).sum(axis=1) - 2 * target @ grid.T  # |t - g|^2 - |t|^2
    entry = grid[dist.argmin(axis=1)]
    return (np.repeat(s.reshape(-1), per // 8)[:, None] * entry * sign).reshape(x.shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("weighted", [False, True])
def test_decodes_alike_signs_kept_and_beats_the_naive_quantizer(fmt, weighted):
    x = gaussian(24, 1280, seed=5)
    x[0, :256] = 0  # an all-zero block
    x[1, 256:512] = 0.3  # a constant one
    x[2, 3] = 25.0  # an outlier
    qw = random_importance(1280) if weighted else None
    raw = quantize_blocks(fmt, x, importance=qw)
    assert raw.shape == (24, 5 * INFO[fmt]["block_bytes"])
    ours = gguf_decode(fmt, raw, x.shape)
    np.testing.assert_array_equal(ours, core_decode(fmt, raw, x.shape))
    np.testing.assert_array_equal(ours[0, :256], 0)
    # a constant block is fitted exactly, then decodes DESHRINK too large (by design, see
    # iq2_quantizers' step 5)
    assert np.abs(ours[1, 256:512] - 0.3 * iq2_quantizers.DESHRINK[fmt]).max() < 0.01
    # signs: every value's, but for at most one a group of 8 under the parity rule
    flipped = ((ours < 0) != (x < 0)) & (x != 0)
    per_group = flipped.reshape(-1, 8).sum(axis=1)
    assert per_group.max() <= (0 if fmt == "iq2_s" else 1)
    if fmt != "iq2_s":  # exactly the groups with an odd count of negative values
        odd = (x.reshape(-1, 8) < 0).sum(axis=1) % 2 == 1
        assert (per_group[~odd] == 0).all() and per_group[odd].sum() >= 0.9 * odd.sum()
    w = np.ones(1280, np.float32) if qw is None else qw
    fit = fitted(fmt, ours)
    assert werr(fit, x, w) < 0.9 * werr(naive(fmt, x), x, w), (werr(fit, x, w), werr(naive(fmt, x), x, w))


@pytest.mark.parametrize("fmt", FORMATS)
def test_importance_lowers_the_weighted_error(fmt):
    x = gaussian(32, 512, seed=2)
    qw = random_importance(512, seed=4)
    plain = gguf_decode(fmt, quantize_blocks(fmt, x), x.shape)
    weighted = gguf_decode(fmt, quantize_blocks(fmt, x, importance=qw), x.shape)
    assert werr(weighted, x, qw) < 0.95 * werr(plain, x, qw)
    # [groups, cols]: each half of the rows with its own importance
    qw2 = np.stack([qw, random_importance(512, seed=9)])
    both = quantize_blocks(fmt, x, importance=qw2)
    np.testing.assert_array_equal(both[16:], quantize_blocks(fmt, x[16:], importance=qw2[1]))


def test_threads_and_neighbours_do_not_change_the_bytes():
    x = gaussian(40, 768, seed=7)
    for fmt in FORMATS:
        one = quantize_blocks(fmt, x, threads=1)
        np.testing.assert_array_equal(quantize_blocks(fmt, x, threads=2), one)
        np.testing.assert_array_equal(quantize_blocks(fmt, x[9:10]), one[9:10])


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_input_is_refused_by_name(fmt):
    with pytest.raises(ValueError, match=f"{fmt}: width 320 is not a multiple of its block of 256"):
        quantize_blocks(fmt, np.zeros((2, 320), np.float32))
    with pytest.raises(ValueError, match="not finite"):
        quantize_blocks(fmt, np.full((1, 256), np.inf, np.float32))
    with pytest.raises(ValueError, match="importance of shape"):
        quantize_blocks(fmt, np.zeros((2, 256), np.float32), importance=np.ones(128, np.float32))
    with pytest.raises(ValueError, match="importance .*negative or not finite"):
        quantize_blocks(fmt, np.zeros((2, 256), np.float32), importance=np.full(256, -1.0, np.float32))
    with pytest.raises(ValueError, match="no i-quant grid"):
        _core.iquant_grid("q4_k")


# ------------------------------------------------------------------------------------------------
# the demo model's matrices, and llama.cpp's quantizer (skipped without a build)


def ggml_quantize(lib, fmt: str, x: np.ndarray, qw: np.ndarray) -> np.ndarray:
    """llama.cpp's quantizer (it needs the importance for the i-quants)."""
    t = int(getattr(gguf.GGMLQuantizationType, INFO[fmt]["gguf_name"]))
    lib.ggml_quantize_init(t)
    x, qw = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(qw, np.float32)
    out = np.zeros((x.shape[0], x.shape[1] // 256 * INFO[fmt]["block_bytes"]), np.uint8)
    lib.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], qw.ctypes.data)
    return out


@pytest.fixture(scope="module")
def demo_ffn_down():
    """Three ffn_down matrices of the demo model (1536 wide: whole 256-value blocks) as f32, and
    their importance from an r1lite imatrix over a short text."""
    import r1lite
    from r1lite.imatrix import compute_imatrix
    from r1lite.resolve import demo_model_path

    try:
        path = demo_model_path()
    except OSError as e:
        pytest.skip(f"no demo model: {e}")
    model = r1lite.load(path, context=256, threads=2)
    text = Path(__file__).read_text()  # any English-ish text will do for a test
    ids = model.tokenizer.encode(text)[:256]
    im = compute_imatrix(model, ids, chunk=128)
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    out = []
    for layer in (0, 14, 29):
        t = tensors[f"blk.{layer}.ffn_down.weight"]
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(576, 1536).astype(np.float32)
        qw = im.importance_for(f"layers.{layer}.w_down", (576, 1536), model.config)
        out.append((np.ascontiguousarray(w[::3]), qw))  # every third row: 192 rows, 1152 blocks
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_demo_matrices_beat_naive_and_match_llama_cpp(fmt, demo_ffn_down):
    lib = ggml_base()
    for w, qw in demo_ffn_down:
        ours = gguf_decode(fmt, quantize_blocks(fmt, w, importance=qw), w.shape)
        e = werr(fitted(fmt, ours), w, qw)
        assert e < 0.9 * werr(naive(fmt, w), w, qw)
        if lib is not None:
            theirs = werr(gguf_decode(fmt, ggml_quantize(lib, fmt, w, qw), w.shape), w, qw)
            assert e <= LLAMA_FACTOR * theirs, (fmt, e, theirs)
            assert werr(ours, w, qw) <= DECODED_FACTOR * theirs, (fmt, werr(ours, w, qw), theirs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_gaussian_rows_match_llama_cpp(fmt):
    lib = ggml_base()
    if lib is None:
        pytest.skip("no llama.cpp build (libggml-base.so; LLAMACPP_HOME)")
    x = gaussian(48, 1024, seed=3)
    qw = random_importance(1024, seed=6)
    ours = gguf_decode(fmt, quantize_blocks(fmt, x, importance=qw), x.shape)
    theirs = werr(gguf_decode(fmt, ggml_quantize(lib, fmt, x, qw), x.shape), x, qw)
    assert werr(fitted(fmt, ours), x, qw) <= LLAMA_FACTOR * theirs, (werr(fitted(fmt, ours), x, qw), theirs)
    assert werr(ours, x, qw) <= DECODED_FACTOR * theirs, (werr(ours, x, qw), theirs)


# ------------------------------------------------------------------------------------------------
# the recipes, end to end: r1lite convert --quant moe-iq2_xxs --imatrix on a small DeepSeek V3


def tiny_deepseek(folder: Path, hidden=256, experts=4, seed=0) -> None:
    """A random f32 DeepSeek-V3 checkpoint whose experts are 256 wide (whole i-quant blocks): a
    dense layer, then an MoE layer (4 routed experts, 2 per token, a shared expert)."""
    import json

    from conftest import write_safetensors

    rng = np.random.default_rng(seed)
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 512,
           "hidden_size": hidden, "intermediate_size": 512, "moe_intermediate_size": 256,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
           "n_shared_experts": 1, "n_routed_experts": experts, "routed_scaling_factor": 2.5,
           "kv_lora_rank": 128, "q_lora_rank": 192, "qk_rope_head_dim": 32, "v_head_dim": 64,
           "qk_nope_head_dim": 64, "n_group": 1, "topk_group": 1, "num_experts_per_tok": 2,
           "first_k_dense_replace": 1, "norm_topk_prob": True, "max_position_embeddings": 512,
           "rms_norm_eps": 1e-6, "rope_theta": 10000, "tie_word_embeddings": False}
    (folder / "config.json").write_text(json.dumps(cfg))

    def mat(rows, cols):
        return ("F32", (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32))

    ones = lambda n: ("F32", np.ones(n, np.float32))  # noqa: E731
    t = {"model.embed_tokens.weight": mat(512, hidden), "model.norm.weight": ones(hidden),
         "lm_head.weight": mat(512, hidden)}
    for layer in range(2):
        p = f"model.layers.{layer}."
        t[p + "input_layernorm.weight"] = t[p + "post_attention_layernorm.weight"] = ones(hidden)
        t[p + "self_attn.q_a_layernorm.weight"] = ones(192)
        t[p + "self_attn.kv_a_layernorm.weight"] = ones(128)
        t[p + "self_attn.q_a_proj.weight"] = mat(192, hidden)
        t[p + "self_attn.q_b_proj.weight"] = mat(4 * 96, 192)
        t[p + "self_attn.kv_a_proj_with_mqa.weight"] = mat(128 + 32, hidden)
        t[p + "self_attn.kv_b_proj.weight"] = mat(4 * 128, 128)
        t[p + "self_attn.o_proj.weight"] = mat(hidden, 4 * 64)
        mlps = ([p + "mlp."] if layer == 0 else
                [p + f"mlp.experts.{e}." for e in range(experts)] + [p + "mlp.shared_experts."])
        width = 512 if layer == 0 else 256
        for m in mlps:
            t[m + "gate_proj.weight"], t[m + "up_proj.weight"] = mat(width, hidden), mat(width, hidden)
            t[m + "down_proj.weight"] = mat(hidden, width)
        if layer:
            t[p + "mlp.gate.weight"] = mat(experts, hidden)
            t[p + "mlp.gate.e_score_correction_bias"] = ("F32", np.zeros(experts, np.float32))
    write_safetensors(folder / "model.safetensors", t)


def test_convert_moe_iq2_xxs_with_an_imatrix(tmp_path, capsys):
    import r1lite
    from r1lite.cli import main
    from r1lite.imatrix import compute_imatrix, write_imatrix
    from r1lite.plan import read_config, recipe_bytes

    src = tmp_path / "src"
    src.mkdir()
    tiny_deepseek(src)
    ref = r1lite.load(r1lite.convert(src, tmp_path / "f32.r1", "f32", progress=False), threads=2)
    tokens = list(np.random.default_rng(1).integers(0, 512, 96))
    imx = write_imatrix(tmp_path / "imatrix.gguf", compute_imatrix(ref, tokens, chunk=32))
    out = tmp_path / "iq2.r1"
    assert main(["convert", str(src), str(out), "--quant", "moe-iq2_xxs", "--imatrix", str(imx)]) == 0
    assert "without an importance matrix" not in capsys.readouterr().err
    m = r1lite.load(out, threads=2)
    fb = m.summary["format_bytes"]
    # experts' gate/up 2 x 4 x 256 x 256 values in IQ2_XXS (66 bytes a block), down in IQ2_XS (74)
    assert fb["iq2_xxs"] == 2 * 4 * 256 * 66 and fb["iq2_xs"] == 4 * 256 * 74
    assert sum(fb.values()) == recipe_bytes(read_config(src), "moe-iq2_xxs")[0]
    ids = [int(i) for i in tokens[:24]]
    got, want = np.asarray(m.logits(ids)), np.asarray(ref.logits(ids))
    assert np.isfinite(got).all()
    # measured 0.84 (moe-q2_k, 2.6-bit experts: 0.86; moe-q3_k: 0.94) on this random model
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.8
    # without an importance matrix: written, with a warning that says what to do
    r1lite.convert(src, tmp_path / "plain.r1", "moe-iq2_xxs", progress=False)
    assert "--imatrix" in capsys.readouterr().err
