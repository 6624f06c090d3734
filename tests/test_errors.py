"""Bad files and bad arguments raise clear Python exceptions naming the problem."""

import json
import shutil
import struct

import numpy as np
import pytest

import r1lite
from r1lite import ModelFormatError, UnsupportedModelError
from conftest import FIXTURES


@pytest.fixture
def model_copy(tmp_path, qwen2_dir):
    dst = tmp_path / "model"
    shutil.copytree(qwen2_dir, dst)
    return dst


def edit_config(folder, **changes):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def rewrite_header(path, edit):
    """Apply edit(header_dict) to a safetensors file's JSON header, keeping the data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        r1lite.load(tmp_path / "nothing-here")


def test_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        r1lite.load(tmp_path)


def test_unknown_architecture_is_named(model_copy):
    edit_config(model_copy, architectures=["MambaForCausalLM"])
    with pytest.raises(UnsupportedModelError, match="MambaForCausalLM") as e:
        r1lite.load(model_copy)
    assert "Qwen2ForCausalLM" in str(e.value) and "LlamaForCausalLM" in str(e.value)


def test_unsupported_rope_type(model_copy):
    edit_config(model_copy, rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4})
    with pytest.raises(UnsupportedModelError, match="dynamic"):
        r1lite.load(model_copy)


def test_config_not_json(model_copy):
    (model_copy / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="config.json"):
        r1lite.load(model_copy)


def test_config_missing_key(model_copy):
    cfg = json.loads((model_copy / "config.json").read_text())
    del cfg["hidden_size"]
    (model_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="hidden_size"):
        r1lite.load(model_copy)


def test_missing_weights_file(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        r1lite.load(model_copy)


def test_missing_tensor_is_named(model_copy):
    rewrite_header(model_copy / "model.safetensors",
                   lambda h: h.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ModelFormatError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        r1lite.load(model_copy)


def test_wrong_shape_is_named(model_copy):
    edit_config(model_copy, intermediate_size=101)
    with pytest.raises(ModelFormatError, match=r"gate_proj.weight.*shape \[100, 72\].*\[101, 72\]"):
        r1lite.load(model_copy)


def test_wrong_dtype_is_named(model_copy):
    def to_int32(h):
        h["model.norm.weight"]["dtype"] = "I32"  # same byte size as F32
    rewrite_header(model_copy / "model.safetensors", to_int32)
    with pytest.raises(ModelFormatError, match=r"model\.norm\.weight.*I32"):
        r1lite.load(model_copy)


def test_truncated_file(model_copy):
    path = model_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFormatError, match="truncated"):
        r1lite.load(model_copy)


@pytest.mark.parametrize("content", [b"", b"\x01\x02", b"\xff" * 64, struct.pack("<Q", 5) + b"[1,2]",
                                     struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc"])
def test_garbage_weights_file(model_copy, content):
    (model_copy / "model.safetensors").write_bytes(content)
    with pytest.raises(ModelFormatError, match="model.safetensors"):
        r1lite.load(model_copy)


def test_offsets_outside_file(model_copy):
    def bad(h):
        h["model.norm.weight"]["data_offsets"] = [10**12, 10**12 + 288]
    rewrite_header(model_copy / "model.safetensors", bad)
    with pytest.raises(ModelFormatError, match=r"model\.norm\.weight"):
        r1lite.load(model_copy)


def test_missing_shard(tmp_path):
    dst = tmp_path / "sharded"
    shutil.copytree(FIXTURES / "qwen2_bf16_tied_sharded", dst)
    (dst / "model-00002-of-00004.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00004"):
        r1lite.load(dst)


def test_bad_load_arguments(qwen2_dir):
    for threads in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="threads"):
            r1lite.load(qwen2_dir, threads=threads)
    for context in (0, -5, 2.0):
        with pytest.raises(ValueError, match="context"):
            r1lite.load(qwen2_dir, context=context)


def test_bad_tokens(qwen2_dir):
    model = r1lite.load(qwen2_dir, context=50)
    with pytest.raises(ValueError, match="131"):
        model.logits([1, 2, 131])
    with pytest.raises(ValueError, match="-1"):
        model.logits([1, -1])
    with pytest.raises(ValueError, match="outside"):
        model.logits([2**40])
    with pytest.raises(ValueError, match="empty"):
        model.logits([])
    with pytest.raises(ValueError, match="integers"):
        model.logits([1.5, 2.0])
    with pytest.raises(ValueError, match="flat"):
        model.logits([[1, 2]])
    with pytest.raises(ValueError, match="context"):
        model.logits(list(range(51)))
    with pytest.raises(ValueError, match="chunk"):
        model.logits([1, 2], chunk=0)
    # the model still works after every refusal
    assert model.logits([1, 2, 3]).shape == (3, 131)


def test_core_refuses_tokens_past_context(qwen2_dir):
    """The core checks too: feeding past the context through the cache raises, changes nothing."""
    model = r1lite.load(qwen2_dir, context=10)
    core = model._core
    core.reset()
    core.forward(np.arange(8, dtype=np.int32), False)
    with pytest.raises(ValueError, match="context"):
        core.forward(np.arange(3, dtype=np.int32), False)
    with pytest.raises(ValueError, match="vocabulary"):
        core.forward(np.array([5, 1000], dtype=np.int32), False)
    assert core.n_past == 8
    core.forward(np.arange(2, dtype=np.int32), False)
    assert core.n_past == 10


def test_batched_forward_checks_its_sequences(qwen2_dir):
    core = r1lite.load(qwen2_dir, context=16)._core
    a, b = core.open_sequence(), core.open_sequence()
    core.forward_batch([(a, np.array([1, 2], np.int32))])
    bad = [
        ([(99, np.array([1], np.int32))], "no open sequence 99"),
        ([(-1, np.array([1], np.int32))], "no open sequence -1"),
        ([(a, np.array([1], np.int32)), (a, np.array([2], np.int32))], "appears twice"),
        ([(b, np.array([], np.int32))], "empty segment"),
        ([(b, np.array([1], np.int32)), (a, np.array([131], np.int32))], "outside the vocabulary"),
        ([(b, np.array([1], np.int32)), (a, np.arange(15, dtype=np.int32))], "context full for sequence"),
        ([], "no segments"),
    ]
    for segments, match in bad:
        with pytest.raises(ValueError, match=match):
            core.forward_batch(segments)
    assert (core.sequence_length(a), core.sequence_length(b)) == (2, 0)  # nothing changed
    core.close_sequence(a)
    with pytest.raises(ValueError, match="no open sequence"):
        core.sequence_length(a)
    with pytest.raises(ValueError, match="cannot be closed"):
        core.close_sequence(0)
    assert core.open_sequence() == a  # the slot is reused


def test_bad_arguments_carry_their_param(qwen2_dir, tiny_r1_model):
    """InvalidArgument (a ValueError) names the refused argument in .param, as data."""
    def param_of(call):
        with pytest.raises(r1lite.InvalidArgument) as e:
            call()
        assert isinstance(e.value, ValueError)
        return e.value.param, e.value.code

    m = tiny_r1_model
    assert param_of(lambda: r1lite.load(qwen2_dir, threads=0)) == ("threads", None)
    assert param_of(lambda: r1lite.load(qwen2_dir, device="tpu")) == ("device", None)
    assert param_of(lambda: m.generate("Hi", temperature=-1)) == ("temperature", None)
    assert param_of(lambda: m.generate("Hi", top_p=2.0)) == ("top_p", None)
    assert param_of(lambda: m.generate("Hi", seed=-1)) == ("seed", None)
    assert param_of(lambda: m.generate("Hi", max_new_tokens=0)) == ("max_new_tokens", None)
    assert param_of(lambda: m.chat([{"role": "user", "content": "Hi"}],
                                   max_thinking_tokens=-1)) == ("max_thinking_tokens", None)
    assert param_of(lambda: m.generate("Hi", stop=[""])) == ("stop", None)
    assert param_of(lambda: m.generate("")) == ("prompt", None)
    assert param_of(lambda: m.chat([])) == ("messages", None)
    assert param_of(lambda: m.logits([1], chunk=0)) == ("chunk", None)
    assert param_of(lambda: m.logits([-1])) == ("tokens", None)
    too_long = list(range(1, m.context + 2))
    assert param_of(lambda: m.generate(too_long)) == ("prompt", "context_length_exceeded")
