"""GGUF deepseek2 files as llama.cpp's converter writes them (tools/gguf_write.py: MLA as MQA
metadata, kv_b split into attn_k_b (transposed) and attn_v_b, experts stacked [E, out, in],
interleaved rope rows left as they are, yarn_log_multiplier), against transformers' logits of the
same checkpoints (tests/fixtures). The writer's meaning is checked by llama.cpp itself
(tools/llamacpp_gguf_check.py): on deepseek_v3_fp8's file its logits are within 1.3e-3 of
transformers'. (deepseek_v2_f32's was checked before the writer wrote q_lora_rank = 0 for models
without one, which llama.cpp needs outside V2-Lite's 26-27 layers; llama.cpp also differs from
transformers by 0.27 on the V2 group-limited router.)"""

import json

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES, rel_err, rounded_err
from gguf_write import write_gguf  # tools/, on the path through conftest
from r1lite.formats.hf import load_hf_folder
from r1lite.formats.tensors import as_f32, materialize

gguf = pytest.importorskip("gguf")

# GGUF cannot express mscale != mscale_all_dim (deepseek_v3_f32) nor a non-interleaved rope
# layout (deepseek_v3_bf16_no_qlora): llama.cpp's converter would mislabel both.
REPRESENTABLE = ["deepseek_v2_f32", "deepseek_v2_group_limited_bf16_sharded", "deepseek_v3_fp8"]


def write_deepseek2_gguf(folder, out):
    """The fixture checkpoint `folder` as llama.cpp's converter would write it (f32, no tokenizer)."""
    raw = json.loads((folder / "config.json").read_text())
    cfg, tensors, _ = load_hf_folder(folder)
    t = {name: as_f32(*materialize(entry)[:2]) for name, entry in tensors.items()}
    return write_gguf(out, cfg, t, raw, tokenizer=False)


def rewrite_gguf(src, out, edit):
    """A copy of the deepseek2 file `src` with the same model metadata and the tensors that
    edit(name, array) returns for each tensor (a list of (name, array); [] drops it)."""
    reader = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(out), "deepseek2")
    for field in reader.fields.values():
        if field.name.startswith("deepseek2."):
            w.add_key_value(field.name, field.contents(), field.types[0],
                            sub_type=field.types[1] if len(field.types) > 1 else None)
    arrays = {t.name: np.array(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    for name, arr in arrays.items():
        for new_name, new_arr in edit(name, arr, arrays):
            w.add_tensor(new_name, np.ascontiguousarray(new_arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.mark.parametrize("name", REPRESENTABLE)
def test_deepseek2_gguf_matches_transformers(name, tmp_path):
    folder = FIXTURES / name
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(write_deepseek2_gguf(folder, tmp_path / f"{name}.gguf"), threads=2, kv_cache="f32")
    assert model.config["attention"] == "mla"
    hf_config = r1lite.load(folder, threads=1).config
    for key in ("router", "expert_groups", "expert_groups_kept", "normalize_expert_weights",
                "routed_scale", "rope_kind", "q_lora_rank", "v_head_dim", "num_shared_experts"):
        assert model.config[key] == hf_config[key], key
    assert model.config["attn_scale_mult"] == pytest.approx(hf_config["attn_scale_mult"], rel=1e-6)
    got = model.logits(oracle["tokens"])
    assert rel_err(got, oracle["logits"]) <= 1e-4
    np.testing.assert_array_equal(got.argmax(-1), oracle["logits"].argmax(-1))


def test_deepseek2_gguf_with_kv_b_as_older_files_have_it(tmp_path):
    """Files from before llama.cpp split kv_b carry attn_kv_b [H·(dn + dv), C] instead."""
    folder = FIXTURES / "deepseek_v2_f32"
    cfg = r1lite.load(folder, threads=1).config
    h, c, dn, dv = cfg["num_heads"], cfg["kv_lora_rank"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]

    def join_kv_b(name, arr, arrays):
        if name.endswith("attn_v_b.weight"):
            return []
        if not name.endswith("attn_k_b.weight"):
            return [(name, arr)]
        k = arr.reshape(h, c, dn).transpose(0, 2, 1)  # back to [H, dn, C]
        v = arrays[name.replace("k_b", "v_b")].reshape(h, dv, c)
        return [(name.replace("attn_k_b", "attn_kv_b"), np.concatenate([k, v], axis=1).reshape(h * (dn + dv), c))]

    old = rewrite_gguf(write_deepseek2_gguf(folder, tmp_path / "split.gguf"), tmp_path / "old.gguf", join_kv_b)
    oracle = np.load(folder / "oracle.npz")
    got = r1lite.load(old, threads=2, kv_cache="f32").logits(oracle["tokens"])
    assert rel_err(got, oracle["logits"]) <= 1e-4


def test_missing_deepseek2_tensors_are_named(tmp_path):
    """A file without the experts of a layer, or without any form of kv_b, names what is missing."""
    from r1lite.errors import ModelFormatError

    full = write_deepseek2_gguf(FIXTURES / "deepseek_v2_f32", tmp_path / "full.gguf")
    for dropped, missing in (("blk.1.ffn_up_exps.weight", "blk.1.ffn_up_exps.weight"),
                             ("blk.0.attn_k_b.weight", "blk.0.attn_kv_b.weight")):
        cut = rewrite_gguf(full, tmp_path / "cut.gguf",
                           lambda name, arr, _: [] if name == dropped else [(name, arr)])
        with pytest.raises(ModelFormatError, match=f"tensor '{missing}' is missing"):
            r1lite.load(cut)


# the fixture whose widths let the experts and the rope-row matrices be Q8_0 blocks (the others'
# tiny widths are not multiples of 32)
@pytest.mark.parametrize("name", ["deepseek_v2_f32"])
def test_deepseek2_gguf_in_q8_0_blocks_matches_an_independent_reading(name, tmp_path):
    """The same files with every matrix whose rows fit as GGUF's Q8_0 blocks (stacked experts,
    attn_k_b / attn_v_b where they fit, the interleaved rope rows of attn_q_b / attn_kv_a_mqa
    moved as whole rows of blocks), computed on in their blocks, against the gguf package's
    dequantization of the same file through r1lite's f32 path (which the test above proves
    against transformers): what is left is the int8 rounding of the activations."""
    from gguf_requant import requantize_gguf
    from test_gguf_native import _dequantized_by_gguf

    from r1lite.formats.gguf_reader import GGUFFile

    folder = FIXTURES / name
    oracle = np.load(folder / "oracle.npz")
    src = write_deepseek2_gguf(folder, tmp_path / f"{name}.gguf")
    g = GGUFFile(src)
    blocks = {n: "gguf_q8_0" for n, t in g.tensors.items()
              if len(t.shape) >= 2 and t.shape[0] % 32 == 0 and "ffn_gate_inp" not in n}
    assert any("exps" in n for n in blocks) and any("attn_q_b" in n or "attn_kv_a_mqa" in n for n in blocks)
    out = requantize_gguf(src, tmp_path / f"{name}-q8_0.gguf", blocks)[0]
    model = r1lite.load(out, threads=2, kv_cache="f32")
    assert model.summary["tensor_formats"]["gguf_q8_0"] >= len(blocks)
    got = model.logits(oracle["tokens"])
    want = _dequantized_by_gguf(out, model.config["context"]).logits(oracle["tokens"])
    assert rounded_err(got, want, folder) <= 0.12  # measured 0.025 (test_model_file's MoE q8_0 bound)
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.85
