"""DeepSeek-V3/R1's multi-token-prediction (MTP) module: its logits against an independent torch
reference (tools/make_fixtures.py mtp_reference, stored in the fixture's oracle), its cache kept
in step with the model's through chunks, truncation and speculative steps, the importer and the
model file carrying it, and speculative decoding with it (`speculative="mtp"`, `--spec mtp`)
giving plain decoding's output."""

import importlib

import numpy as np
import pytest
from conftest import FIXTURES, rel_err

import r1lite
from r1lite.errors import InvalidArgument
from r1lite.speculative import MtpProposer

generate_module = importlib.import_module("r1lite.generate")  # (r1lite.generate is a function)
MTP = FIXTURES / "deepseek_v3_mtp_f32"
NO_MTP = FIXTURES / "deepseek_v3_f32"


@pytest.fixture(scope="module")
def model():
    return r1lite.load(MTP, threads=2, kv_cache="f32")


@pytest.fixture(scope="module")
def oracle():
    return np.load(MTP / "oracle.npz")


def mtp_logits(m, tokens, chunk):
    """The MTP logits at positions 0..len-2, the model and the module fed chunk by chunk."""
    rows = []
    with m.session() as s:
        s.reset()
        pending = np.zeros((0, m.config["hidden_size"]), np.float32)
        for i in range(0, len(tokens), chunk):
            s.forward(tokens[i:i + chunk], True)
            pending = np.concatenate([pending, s.hidden()])
            end = min(s.length, len(tokens) - 1)  # positions whose next token is known
            j0 = s.mtp_length
            if end > j0:
                rows.append(s.forward_mtp(tokens[j0 + 1:end + 1], pending[:end - j0]))
                pending = pending[end - j0:]
    return np.concatenate(rows)


@pytest.mark.parametrize("chunk", [1000, 7], ids=["one_pass", "chunks"])
def test_mtp_logits_match_the_reference(model, oracle, chunk):
    assert model.config["mtp_layers"] == 1
    tokens = oracle["tokens"]
    got = mtp_logits(model, tokens, chunk)
    assert got.shape == oracle["mtp_logits"].shape
    assert rel_err(got, oracle["mtp_logits"]) <= 1e-4
    assert rel_err(model.logits(tokens), oracle["logits"]) <= 1e-4  # the main model as before


def test_mtp_depends_on_the_hidden_state_and_its_position(model, oracle):
    """The comparison above can fail: h_{j-1} in place of h_j gives other logits."""
    tokens, want = oracle["tokens"], oracle["mtp_logits"]
    with model.session() as s:
        s.reset()
        s.forward(tokens, True)
        h = s.hidden()
        shifted = s.forward_mtp(tokens[1:], np.roll(h[:-1], 1, axis=0))
    assert rel_err(shifted, want) > 1e-2


def test_the_mtp_cache_follows_truncate(model, oracle):
    tokens = oracle["tokens"]
    rng = np.random.default_rng(0)
    other = rng.integers(0, model.config["vocab_size"], 20).astype(np.int32)
    with model.session() as s:
        s.reset()
        s.forward(tokens[:60], True)
        s.forward_mtp(tokens[1:60], s.hidden()[:59])
        assert (s.length, s.mtp_length) == (60, 59)
        s.truncate(30)
        assert (s.length, s.mtp_length) == (30, 30)
        s.forward(other, True)  # positions 30.. hold other tokens now
        s.forward_mtp(other[:19], s.hidden()[:19])
        with pytest.raises(ValueError, match="no forward"):  # forward_mtp ran since
            s.hidden()
        with pytest.raises(ValueError, match="not all fed"):
            s.forward_mtp(other[:2], np.zeros((2, model.config["hidden_size"]), np.float32))
        s.reset()
        assert s.mtp_length == 0
    seq = np.concatenate([tokens[:30], other])
    want = mtp_logits(model, seq, 1000)
    with model.session() as s:  # positions 30..48 again, after the cut
        s.reset()
        s.forward(tokens[:30], True)
        h1 = s.hidden()
        s.forward_mtp(seq[1:30], h1[:29])
        s.truncate(30)
        s.forward(other, True)
        h2 = s.hidden()
        got = s.forward_mtp(seq[30:50], np.concatenate([h1[29:], h2[:19]]))
    assert rel_err(got, want[29:49]) <= 1e-4


def test_models_without_mtp_refuse_it(oracle):
    m = r1lite.load(NO_MTP, threads=2)
    assert m.config["mtp_layers"] == 0
    with m.session() as s:
        s.reset()
        s.forward([1, 2, 3])
        with pytest.raises(ValueError, match="no MTP module"):
            s.forward_mtp([2, 3], s.hidden()[:2])
    with pytest.raises(InvalidArgument, match="multi-token-prediction module.*has none"):
        m.generate([1, 2, 3], max_new_tokens=2, speculative="mtp")


def test_bad_mtp_settings_are_refused(model):
    for spec, match in (({"proposer": "mtp", "k": 2}, "k must be 1"),
                        ({"proposer": "mtp", "k": 0}, "k must be an integer >= 1")):
        with pytest.raises(InvalidArgument, match=match):
            model.generate([1, 2, 3], max_new_tokens=2, speculative=spec)
    with model.session() as s:
        s.reset()
        s.forward([1, 2, 3], True)
        with pytest.raises(ValueError, match="hidden must be"):
            s.forward_mtp([2, 3], s.hidden())
        with pytest.raises(ValueError, match="outside the vocabulary"):
            s.forward_mtp([2, 999], s.hidden()[:2])


# -- speculative decoding with the module -------------------------------------------------------

@pytest.mark.parametrize("chunk", [256, 16], ids=["one_chunk", "chunked_prompt"])
def test_greedy_mtp_is_plain_greedy(model, oracle, monkeypatch, chunk):
    monkeypatch.setattr(generate_module, "PREFILL_CHUNK", chunk)
    prompt = oracle["tokens"][:40].tolist()
    kw = dict(max_new_tokens=60, temperature=0, loop_guard=False)
    want = model.generate(prompt, **kw)
    got = model.generate(prompt, speculative="mtp", **kw)
    assert got.tokens == want.tokens and got.finish_reason == want.finish_reason
    st = got.stats
    assert st["spec_steps"] - 1 <= st["spec_proposed"] <= st["spec_steps"]  # one a step (none past the budget)
    print(f"MTP (random weights): acceptance {st['acceptance_rate']:.2f}, "
          f"{st['tokens_per_step']:.2f} tokens per step")


def test_mtp_proposals_follow_a_cold_pass(model, oracle, monkeypatch):
    """Through accepted and rejected steps (every other step is handed the right token, so both
    happen) and a chunked prompt, each proposal comes from the logits a cold pass of the model
    and the module over the final sequence gives at that position."""
    monkeypatch.setattr(generate_module, "PREFILL_CHUNK", 16)
    prompt = oracle["tokens"][:40].tolist()
    kw = dict(max_new_tokens=50, temperature=0, loop_guard=False)
    want = model.generate(prompt, **kw).tokens
    seen = {}
    catch_up, propose = MtpProposer._catch_up, MtpProposer.propose

    def recording_catch_up(self, history):
        row = catch_up(self, history)
        if row is not None:
            seen[self.s.mtp_length - 1] = row
        return row

    def helped_propose(self, history, k):
        tokens, q = propose(self, history, k)
        i = len(history) - len(prompt)  # want[i] follows history[-1]
        if len(seen) % 2 and i < len(want):
            tokens = [want[i]]
        return tokens, q

    monkeypatch.setattr(MtpProposer, "_catch_up", recording_catch_up)
    monkeypatch.setattr(MtpProposer, "propose", helped_propose)
    got = model.generate(prompt, speculative="mtp", **kw)
    assert got.tokens == want
    assert 0 < got.stats["spec_accepted"] < got.stats["spec_proposed"]
    cold = mtp_logits(model, np.asarray(prompt + want, np.int32), 1000)
    assert len(seen) > 20
    for pos, row in seen.items():
        assert rel_err(row, cold[pos]) <= 1e-4, pos


def test_seeded_sampling_with_mtp_equals_plain(model, oracle):
    prompt = oracle["tokens"][:20].tolist()
    for seed in range(3):
        kw = dict(max_new_tokens=30, temperature=0.8, top_k=20, seed=seed, loop_guard=False)
        assert (model.generate(prompt, speculative="mtp", **kw).tokens
                == model.generate(prompt, **kw).tokens)


# -- the model file -------------------------------------------------------------------------------

def test_converted_file_carries_the_module(tmp_path, oracle):
    from r1lite.converter import convert
    from r1lite.formats.safetensors import SafetensorsFile

    out = convert(MTP, tmp_path / "mtp-f32.r1", "f32", progress=False)
    m = r1lite.load(out, threads=2, kv_cache="f32")
    assert m.config["mtp_layers"] == 1
    assert rel_err(mtp_logits(m, oracle["tokens"], 1000), oracle["mtp_logits"]) <= 1e-5
    # quantized, the module is quantized too and speculation still gives the plain output
    out = convert(MTP, tmp_path / "mtp-q8.r1", "q8_0", progress=False)
    st = SafetensorsFile(out)
    assert st.dtype("mtp.0.eh_proj") == "I8" and st.dtype("mtp.0.experts.1.w_down") == "I8"
    assert st.dtype("mtp.0.enorm") == "F32"
    q8 = r1lite.load(out, threads=2)
    prompt = oracle["tokens"][:30].tolist()
    kw = dict(max_new_tokens=30, temperature=0, loop_guard=False)
    assert q8.generate(prompt, speculative="mtp", **kw).tokens == q8.generate(prompt, **kw).tokens
