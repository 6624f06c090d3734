"""The CUDA backend (csrc/cuda) against the CPU path, and so against transformers: every fixture
architecture in f32 / bf16 / q8_0 / q4_0. The GPU tests need a CUDA device and are skipped
without one (with the reason); tools/device_check.sh runs them on a lent GPU. The rest run
everywhere: the backend must be compiled where asked (test_backend_is_compiled_where_asked), and asking for a GPU that is not
there must say why."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import r1lite
from r1lite import _core
from conftest import fixture_dirs, rel_err

FIXTURES = fixture_dirs()
FORMATS = ["f32", "bf16", "q8_0", "q4_0"]
TOL = 1e-3  # max |cuda - cpu| / max |cpu|: the same math, float sums in another order

UNAVAILABLE = _core.cuda_unavailable_reason()
needs_gpu = pytest.mark.skipif(bool(UNAVAILABLE), reason=f"no CUDA device: {UNAVAILABLE}")


def nvcc_present() -> bool:
    return shutil.which("nvcc") is not None or Path("/usr/local/cuda/bin/nvcc").exists()


def test_backend_is_compiled_where_asked():
    """R1LITE_CUDA=ON builds the backend wherever nvcc is (CI does, so the CUDA code keeps
    compiling); AUTO only where an NVIDIA driver is loaded too."""
    if not nvcc_present():
        pytest.skip("no nvcc on this machine: the package is CPU-only here")
    if _core.cuda_option == "OFF":
        pytest.skip("built with R1LITE_CUDA=OFF")
    driver = Path("/proc/driver/nvidia/version").exists()
    if _core.cuda_option == "ON" or driver:
        assert _core.cuda_built, f"nvcc is here but the CUDA backend was not built (R1LITE_CUDA={_core.cuda_option})"
    else:
        assert not _core.cuda_built, "R1LITE_CUDA=AUTO built the CUDA backend without an NVIDIA driver"


def test_bad_device_names_fail_before_loading():
    for bad in ("gpu", "cuda:x", "cuda:-1", "", 0):
        with pytest.raises(ValueError, match="device must be"):
            r1lite.load(FIXTURES[0], device=bad)


def test_a_missing_gpu_is_named():
    if not UNAVAILABLE:
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="device='cuda' is not available: .+"):
        r1lite.load(FIXTURES[0], device="cuda")


def test_serve_offers_no_device(capsys):
    """serve runs on the CPU (continuous batching): it neither lists nor accepts --device."""
    from r1lite.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", str(FIXTURES[0]), "--device", "cuda"])
    assert e.value.code == 2 and "unrecognized arguments: --device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--device" not in capsys.readouterr().out


# ---- on a GPU ----

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(fixture, format) -> an r1lite model file, made once."""
    out = tmp_path_factory.mktemp("cuda_models")
    cache = {}

    def get(folder: Path, fmt: str) -> Path:
        key = (folder.name, fmt)
        if key not in cache:
            cache[key] = r1lite.convert(folder, out / f"{folder.name}-{fmt}.safetensors", quant=fmt,
                                        progress=False)
        return cache[key]
    return get


def same_argmax_unless_tied(got: np.ndarray, want: np.ndarray) -> None:
    """Argmax equal at every position, except where the reference's two best logits are closer
    than the tolerance allows the two computations to differ (a genuine tie)."""
    top2 = np.sort(want, axis=-1)[:, -2:]
    tied = (top2[:, 1] - top2[:, 0]) <= 2 * TOL * np.abs(want).max()
    differ = got.argmax(-1) != want.argmax(-1)
    assert not np.any(differ & ~tied), np.flatnonzero(differ & ~tied)


@needs_gpu
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("folder", FIXTURES, ids=[d.name for d in FIXTURES])
def test_logits_match_the_cpu(folder, fmt, converted):
    path = converted(folder, fmt)
    tokens = np.load(folder / "oracle.npz")["tokens"]
    want = r1lite.load(path, threads=2).logits(tokens)
    gpu = r1lite.load(path, device="cuda")
    for chunk in (None, 1, 7):  # prefill kernels, the decode graph, mixed
        got = gpu.logits(tokens, chunk=chunk)
        assert rel_err(got, want) <= TOL, (chunk, rel_err(got, want))
        same_argmax_unless_tied(got, want)


@needs_gpu
@pytest.mark.parametrize("folder", FIXTURES, ids=[d.name for d in FIXTURES])
def test_f32_matches_transformers(folder):
    oracle = np.load(folder / "oracle.npz")
    got = r1lite.load(folder, device="cuda").logits(oracle["tokens"])
    assert rel_err(got, oracle["logits"]) <= TOL
    same_argmax_unless_tied(got, oracle["logits"])


@needs_gpu
@pytest.mark.parametrize("folder", FIXTURES, ids=[d.name for d in FIXTURES])
def test_greedy_tokens_equal_transformers(folder):
    oracle = np.load(folder / "oracle.npz")
    model = r1lite.load(folder, device="cuda")
    g = model.generate([int(t) for t in oracle["greedy_prompt"]],
                       max_new_tokens=len(oracle["greedy_tokens"]), temperature=0)
    assert g.tokens == [int(t) for t in oracle["greedy_tokens"]]


@needs_gpu
def test_graph_replay_equals_plain_launches(converted):
    folder = FIXTURES[0]
    tokens = np.load(folder / "oracle.npz")["tokens"][:24]
    model = r1lite.load(converted(folder, "q8_0"), device="cuda")
    with_graph = model.logits(tokens, chunk=1)
    model._core.set_graphs(False)
    without = model.logits(tokens, chunk=1)
    np.testing.assert_array_equal(with_graph, without)


@needs_gpu
def test_device_argmax_equals_logits_argmax():
    folder = FIXTURES[0]
    tokens = np.load(folder / "oracle.npz")["tokens"].astype(np.int32)
    core = r1lite.load(folder, device="cuda")._core
    core.reset()
    want = core.forward(tokens[:5], True)[-1].argmax()
    core.reset()
    assert core.forward_argmax(tokens[:5]) == want
    assert core.n_past == 5


@needs_gpu
def test_inputs_longer_than_one_chunk(qwen2_dir):
    tokens = np.random.default_rng(0).integers(0, 131, 1100)
    want = r1lite.load(qwen2_dir, threads=2, context=1200).logits(tokens, chunk=600)
    got = r1lite.load(qwen2_dir, device="cuda", context=1200).logits(tokens)
    assert rel_err(got, want) <= TOL


@needs_gpu
def test_errors_on_the_device(qwen2_dir):
    model = r1lite.load(qwen2_dir, device="cuda", context=16)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model._core.forward(np.array([1, 131], np.int32), False)
    model._core.reset()
    model._core.forward(np.arange(10, dtype=np.int32), False)
    with pytest.raises(ValueError, match="context full"):
        model._core.forward(np.arange(10, dtype=np.int32), False)
    assert model._core.n_past == 10  # nothing changed by the refused call
    with pytest.raises(ValueError, match="one sequence"):
        model._core.open_sequence()
