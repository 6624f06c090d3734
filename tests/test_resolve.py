"""Model names that are not paths: hub ids resolved from a local Hugging Face cache, offline;
and the default thread count."""

import os

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES
from tiny_model import fake_hub_cache

pytest.importorskip("huggingface_hub", reason="hub ids need huggingface_hub")


def test_hub_id_from_the_local_cache_offline(tmp_path, monkeypatch):
    fake_hub_cache(tmp_path / "hub", "deepseek-ai/Tiny-Qwen2", FIXTURES / "qwen2_f32")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("R1LITE_CACHE", str(tmp_path / "r1cache"))
    monkeypatch.setenv("R1LITE_HUB_QUANT", "f32")
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    m = r1lite.load("deepseek-ai/Tiny-Qwen2", kv_cache="f32")
    oracle = np.load(FIXTURES / "qwen2_f32" / "oracle.npz")
    assert np.abs(m.logits(oracle["tokens"]) - oracle["logits"]).max() <= 1e-4 * np.abs(oracle["logits"]).max()
    converted = list((tmp_path / "r1cache" / "models" / "deepseek-ai--Tiny-Qwen2").iterdir())
    assert [p.name for p in converted] == ["f32.safetensors"]  # converted into the model store
    assert r1lite.load("deepseek-ai/Tiny-Qwen2").source == str(converted[0])  # converted once


def test_unknown_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LITE_CACHE", str(tmp_path / "r1cache"))
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="no-such/model"):
        r1lite.load("no-such/model")


def test_default_threads_count_physical_cores():
    from r1lite.loader import default_threads, parse_cpu_list, physical_cores

    assert parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    smt = {0: {0, 4}, 1: {1, 5}, 2: {2, 6}, 3: {3, 7}}  # 4 cores with 2 hyperthreads each
    sib = lambda cpu: smt[cpu % 4]  # noqa: E731
    assert physical_cores(set(range(8)), sib) == 4
    assert physical_cores({0, 4, 1}, sib) == 2  # affinity limited to part of the machine
    assert physical_cores({0, 1, 2}, lambda cpu: {cpu}) == 3  # no hyperthreads
    assert 1 <= default_threads() <= (os.cpu_count() or 1)
