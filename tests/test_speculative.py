"""Speculative decoding against plain decoding: greedy outputs token for token, sampled outputs
in distribution (chi-square against the target's exact distribution from model.logits), the KV
cache rolled back as a cold forward pass would have it, and bad settings refused."""

import json
import math
import shutil
import numpy as np
import pytest
from conftest import FIXTURES
from safetensors.numpy import save_file

import r1lite
from r1lite.sampling import Sampler, SamplingParams
from r1lite.session import Session
from r1lite.speculative import Speculative

DENSE, MLA = FIXTURES / "qwen2_f32", FIXTURES / "deepseek_v3_f32"  # deepseek_v3: MLA + MoE


def random_model(out, vocab: int, seed: int, layers: int = 1):
    """A tiny random Qwen2 folder (no tokenizer) with the given vocabulary."""
    out.mkdir(parents=True, exist_ok=True)
    hidden, heads, kv_heads, hd, inter = 16, 2, 1, 8, 24
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
           "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "intermediate_size": inter, "rms_norm_eps": 1e-6,
           "rope_theta": 10000.0, "max_position_embeddings": 1024, "tie_word_embeddings": True}
    (out / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    t = {"model.embed_tokens.weight": w(vocab, hidden) * 3, "model.norm.weight": np.ones(hidden, np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": np.ones(hidden, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
                  p + "self_attn.q_proj.weight": w(heads * hd, hidden),
                  p + "self_attn.q_proj.bias": np.zeros(heads * hd, np.float32),
                  p + "self_attn.k_proj.weight": w(kv_heads * hd, hidden),
                  p + "self_attn.k_proj.bias": np.zeros(kv_heads * hd, np.float32),
                  p + "self_attn.v_proj.weight": w(kv_heads * hd, hidden),
                  p + "self_attn.v_proj.bias": np.zeros(kv_heads * hd, np.float32),
                  p + "self_attn.o_proj.weight": w(hidden, heads * hd),
                  p + "mlp.gate_proj.weight": w(inter, hidden), p + "mlp.up_proj.weight": w(inter, hidden),
                  p + "mlp.down_proj.weight": w(hidden, inter)})
    save_file(t, str(out / "model.safetensors"))
    return out


def load(path, context=1024):
    return r1lite.load(path, threads=2, context=context)


def repetitive_prompt(vocab: int, length: int, seed: int = 0) -> list:
    """A few random phrases repeated in random order: prompt lookup finds much to propose."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(0, vocab, int(rng.integers(5, 12))).tolist() for _ in range(4)]
    out = []
    while len(out) < length:
        out += phrases[int(rng.integers(0, 4))]
    return out[:length]


# -- the cache rolled back ----------------------------------------------------------------------

@pytest.mark.parametrize("folder", [DENSE, MLA], ids=["dense", "mla_moe"])
def test_truncate_then_refeed_equals_a_cold_forward(folder):
    m = load(folder)
    V = m.config["vocab_size"]
    rng = np.random.default_rng(0)
    first = rng.integers(0, V, 300).tolist()
    other = rng.integers(0, V, 40).tolist()
    with m.session() as s:
        s.reset()
        s.forward(first[:200])
        s.forward(first[200:])  # 300 positions: two pages
        full_bytes = m.cache_bytes
        s.truncate(250)  # back into the first page, past rows dropped
        assert s.length == 250 and m.cache_bytes < full_bytes
        got = s.forward(other, True)  # positions 250.. hold other tokens now
        for bad in (s.length + 1, -1):
            with pytest.raises(ValueError, match="truncate"):
                s.truncate(bad)
        s.truncate(0)
        assert s.length == 0
    want = m.logits(first[:250] + other)[250:]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("folder", [DENSE, MLA], ids=["dense", "mla_moe"])
def test_token_by_token_equals_one_forward(folder):
    """Bit for bit: a decode step (the MoE's one-token path: every chosen expert's gate and up in
    one section) gives each position the logits one forward of the whole sequence gives it, as
    verification passes need."""
    m = load(folder)
    tokens = np.random.default_rng(1).integers(0, m.config["vocab_size"], 24).tolist()
    want = m.logits(tokens)
    with m.session() as s:
        s.reset()
        got = np.concatenate([s.forward([t], True) for t in tokens])
    np.testing.assert_array_equal(got, want)


def test_truncate_a_batch_sequence():
    m = load(MLA)
    V = m.config["vocab_size"]
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, V, n).tolist() for n in (30, 12, 7))
    with m.batch() as batch:
        sid = batch.open_sequence()
        batch.forward_batch([(sid, np.array(a + b, np.int32))])
        batch.truncate_sequence(sid, len(a))
        got = batch.forward_batch([(sid, np.array(c, np.int32))])[0]
        with pytest.raises(ValueError, match="truncate"):
            batch.truncate_sequence(sid, 1000)
        with pytest.raises(ValueError, match="no open sequence"):
            batch.truncate_sequence(sid + 5, 0)
        batch.close_sequence(sid)
    np.testing.assert_array_equal(got, m.logits(a + c)[-1])


# -- greedy: token for token ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def draft_dense(tmp_path_factory):
    return load(random_model(tmp_path_factory.mktemp("draft131"), 131, seed=7))


@pytest.fixture(scope="module")
def draft_mla(tmp_path_factory):
    return load(random_model(tmp_path_factory.mktemp("draft151"), 151, seed=8))


@pytest.mark.parametrize("folder", [DENSE, MLA], ids=["dense", "mla_moe"])
@pytest.mark.parametrize("length", [40, 300], ids=["short", "chunked"])  # 300: two prefill chunks
def test_greedy_prompt_lookup_is_plain_greedy(folder, length):
    m = load(folder)
    prompt = repetitive_prompt(m.config["vocab_size"], length)
    kw = dict(max_new_tokens=120, temperature=0, loop_guard=False)
    want = m.generate(prompt, **kw)
    for spec in ("ngram", {"proposer": "ngram", "k": 3, "n": 1}, Speculative(k=16, n=5)):
        got = m.generate(prompt, speculative=spec, **kw)
        assert got.tokens == want.tokens and got.finish_reason == want.finish_reason
        assert got.stats["spec_proposed"] > 0 and got.stats["spec_accepted"] > 0
        assert got.stats["spec_steps"] < len(got.tokens)  # fewer passes than tokens


@pytest.mark.parametrize("folder,draft", [(DENSE, "draft_dense"), (MLA, "draft_mla")],
                         ids=["dense", "mla_moe"])
def test_greedy_draft_models(folder, draft, request):
    m = load(folder)
    prompt = repetitive_prompt(m.config["vocab_size"], 60, seed=3)
    kw = dict(max_new_tokens=60, temperature=0, loop_guard=False)
    want = m.generate(prompt, **kw)
    same = m.generate(prompt, speculative={"draft": load(folder), "k": 5}, **kw)  # draft = target
    assert same.tokens == want.tokens
    assert same.stats["acceptance_rate"] == 1.0 and same.stats["tokens_per_step"] > 5
    other = request.getfixturevalue(draft)
    got = m.generate(prompt, speculative=other, **kw)
    assert got.tokens == want.tokens
    assert got.stats["spec_proposed"] > 0 and got.stats["acceptance_rate"] < 1.0


def test_text_stops_budgets_and_loops_as_plain(tiny_r1_model):
    """Stop strings, max_new_tokens, EOS, the thinking budget (forced tokens) and the loop guard
    end a speculative run exactly where they end a plain one. Seeded sampling: with a
    deterministic proposer every token is drawn by the plain sampler from the same logits, so
    the outputs are equal seed for seed, and proposals do get rejected."""
    m = tiny_r1_model
    text = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n" * 3
    sampled = dict(temperature=0.7, top_k=5, seed=3)
    base = m.generate(text, max_new_tokens=40, **sampled)
    cases = [dict(max_new_tokens=n) for n in (1, 2, 3, 9, 40)] + [dict(temperature=0)]
    assert len(base.text) > 6
    cases.append(dict(max_new_tokens=40, stop=base.text[len(base.text) // 2:][:3]))
    proposed = accepted = 0
    for extra in cases:
        kw = dict(dict(sampled, max_new_tokens=40), **extra)
        want = m.generate(text, **kw)
        got = m.generate(text, speculative="ngram", **kw)
        assert (got.text, got.tokens, got.finish_reason) == (want.text, want.tokens, want.finish_reason)
        proposed, accepted = proposed + got.stats["spec_proposed"], accepted + got.stats["spec_accepted"]
    msgs = [{"role": "user", "content": text}]
    for kw in (dict(max_thinking_tokens=12), dict(max_thinking_tokens=40, thinking_margin=8),
               dict(loop_guard=True, temperature=0), dict(max_new_tokens=300),
               dict(max_new_tokens=300, temperature=0)):
        kw = dict(dict(sampled, max_new_tokens=150), **kw)
        want = m.chat(msgs, **kw)
        got = m.chat(msgs, speculative={"proposer": "ngram", "k": 6}, **kw)
        assert (got.reasoning, got.answer, got.tokens, got.finish_reason) == \
            (want.reasoning, want.answer, want.tokens, want.finish_reason)
        assert got.stats["reasoning_closed_by"] == want.stats["reasoning_closed_by"]
        proposed, accepted = proposed + got.stats["spec_proposed"], accepted + got.stats["spec_accepted"]
    assert 0 < accepted < proposed


# -- sampling: the target's distribution ---------------------------------------------------------

TINY_V = 8
SAMPLING = dict(temperature=1.0, top_k=6, top_p=0.95)


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's chi-square p-value (Wilson-Hilferty approximation), cells of expected count < 5
    pooled into one."""
    n = counts.sum()
    exp = probs * n
    small = exp < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(exp[~small], exp[small].sum())
    keep = exp > 0
    assert np.all(obs[~keep] == 0), "a token the target never chooses was emitted"
    obs, exp = obs[keep], exp[keep]
    stat, dof = float(((obs - exp) ** 2 / exp).sum()), len(obs) - 1
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / math.sqrt(2 / (9 * dof))
    return 0.5 * math.erfc(z / math.sqrt(2))


def exact_distribution(m, prompt, steps: int) -> np.ndarray:
    """P(x1..x_steps) of the target, from model.logits and the sampler's filters: [V]*steps."""
    filt = Sampler(SamplingParams(**SAMPLING))
    out = np.zeros((TINY_V,) * steps)

    def walk(prefix, prob):
        if len(prefix) == steps:
            out[tuple(prefix)] = prob
            return
        p = filt.probs(m.logits(prompt + prefix)[-1], prompt + prefix)
        for x in np.flatnonzero(p):
            walk(prefix + [int(x)], prob * p[x])
    walk([], 1.0)
    return out


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    target = load(random_model(tmp_path_factory.mktemp("t8"), TINY_V, seed=11, layers=2), 64)
    draft = load(random_model(tmp_path_factory.mktemp("d8"), TINY_V, seed=12), 64)
    return target, draft


@pytest.mark.parametrize("proposer", ["ngram", "draft"])
def test_sampling_matches_the_target_distribution(tiny_pair, proposer):
    target, draft = tiny_pair
    prompt = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]
    steps, runs = 3, 3000
    spec = ({"proposer": "ngram", "n": 1, "k": 3} if proposer == "ngram"
            else {"draft": draft, "k": 3})
    counts = np.zeros((TINY_V,) * steps)
    proposed = accepted = 0
    for seed in range(runs):
        g = target.generate(prompt, max_new_tokens=steps, seed=seed, speculative=spec,
                            loop_guard=False, **SAMPLING)
        counts[tuple(g.tokens)] += 1
        proposed += g.stats["spec_proposed"]
        accepted += g.stats["spec_accepted"]
    assert proposed > runs and 0 < accepted < proposed  # verification did happen, and rejected
    want = exact_distribution(target, prompt, steps)
    # x2 and x3 are the speculated ones: their joint with x1, and x3's marginal
    assert chi2_pvalue(counts.sum(2).ravel(), want.sum(2).ravel()) > 1e-3
    assert chi2_pvalue(counts.sum((0, 1)), want.sum((0, 1))) > 1e-3
    assert chi2_pvalue(counts.ravel(), want.ravel()) > 1e-3


def test_seeded_sampling_with_prompt_lookup_equals_plain(tiny_r1_model):
    """A deterministic proposal draws each token with the plain sampler from the same logits:
    seed for seed the same output."""
    text = "one two three four five one two three four five one two three"
    for seed in range(3):
        kw = dict(max_new_tokens=30, temperature=0.8, top_p=0.9, seed=seed, loop_guard=False)
        assert (tiny_r1_model.generate(text, speculative="ngram", **kw).tokens
                == tiny_r1_model.generate(text, **kw).tokens)


# -- refused settings -----------------------------------------------------------------------------

def test_bad_settings_are_refused(tiny_r1, tiny_r1_model, tmp_path):
    m = load(DENSE)
    p = [1, 2, 3]
    for spec, match in [("nope", "unknown speculative proposer 'nope'"),
                        ({"k": 0}, "k must be an integer >= 1"),
                        ({"proposer": "ngram", "n": 0}, "n must be an integer >= 1"),
                        ({"proposer": "draft"}, "needs a draft model"),
                        ({"x": 1}, "unknown speculative option"),
                        (m, "another Model object"),
                        (load(FIXTURES / "llama3_f32"), "vocab_size 157 vs 131"),
                        (42, "speculative must be")]:
        with pytest.raises(ValueError, match=match):
            m.generate(p, max_new_tokens=2, speculative=spec)
    # a tokenizer against none, and two different tokenizers of the same vocabulary size
    no_tok = load(random_model(tmp_path / "plain", tiny_r1_model.config["vocab_size"], 1), 256)
    with pytest.raises(ValueError, match="the draft has none"):
        tiny_r1_model.generate("hi", max_new_tokens=2, speculative=no_tok)
    other = tmp_path / "other_tok"
    shutil.copytree(tiny_r1, other)
    tj = json.loads((other / "tokenizer.json").read_text())
    tj["added_tokens"][0]["content"] = "<｜other｜>"
    (other / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ValueError, match="tokenizers differ"):
        tiny_r1_model.generate("hi", max_new_tokens=2, speculative=load(other, 256))
    m.device = "cuda:0"  # what a model on a GPU says; the check comes before any forward pass
    with pytest.raises(ValueError, match="not supported on the cuda:0 device"):
        m.generate(p, max_new_tokens=2, speculative="ngram")


# -- stopped mid-verification ---------------------------------------------------------------------

@pytest.mark.parametrize("with_draft", [False, True], ids=["ngram", "draft"])
def test_interrupted_verification_leaves_the_models_usable(monkeypatch, with_draft):
    m = load(MLA)
    draft = load(MLA) if with_draft else None
    prompt = repetitive_prompt(m.config["vocab_size"], 50, seed=5)
    spec = {"draft": draft} if with_draft else "ngram"
    kw = dict(max_new_tokens=40, temperature=0, loop_guard=False)
    want = m.generate(prompt, **kw)

    calls = {"n": 0}
    real = Session.forward

    def forward(self, ids, all_positions=False):
        if all_positions and len(ids) > 1:  # a verification pass
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return real(self, ids, all_positions)
    monkeypatch.setattr(Session, "forward", forward)
    with pytest.raises(KeyboardInterrupt):
        m.generate(prompt, speculative=spec, **kw)
    monkeypatch.setattr(Session, "forward", real)
    assert m.generate(prompt, speculative=spec, **kw).tokens == want.tokens

    stream = m.stream(prompt, speculative=spec, **kw)  # no tokenizer: one piece per step
    next(stream)
    stream.close()
    assert m.generate(prompt, speculative=spec, **kw).tokens == want.tokens
    if draft is not None:  # the draft was given back too
        assert draft.generate(prompt, **kw).tokens == want.tokens


# -- the command line -----------------------------------------------------------------------------

def test_cli_spec_and_draft(tiny_r1, capsys):
    from r1lite.cli import main  # in process: the r1lite under test

    cli = ["run", str(tiny_r1), "--raw", "-n", "24", "--temp", "0", "-c", "512"]
    prompt = "a b c d e f a b c d e f a b c d"

    def run(*extra):
        rc = main(cli + list(extra) + [prompt])
        out = capsys.readouterr()
        return rc, out.out, out.err
    rc, want, _ = run()
    assert rc == 0 and want.strip()
    for extra in (["--spec", "ngram", "--spec-k", "4", "--spec-n", "2"], ["--draft", str(tiny_r1)]):
        rc, out, err = run(*extra)
        assert rc == 0, err
        assert out == want
    assert "tokens per step" in run("--spec", "ngram", "--verbose")[2]
    for extra, match in ((["--spec", "ngram", "--spec-k", "0"], "--spec-k must be >= 1"),
                         (["--spec-k", "3"], "need --spec ngram or --draft"),
                         (["--spec", "magic"], "--spec must be ngram or mtp"),
                         (["--spec", "mtp"], "multi-token-prediction module"),
                         (["--spec", "mtp", "--spec-n", "2"], "--spec-n is for --spec ngram")):
        rc, _, err = run(*extra)
        assert rc == 1 and match in err


def test_prompt_lookup_guesses_as_far_as_the_match_reaches():
    """The occurrence whose preceding tokens match the history's end the longest wins over a more
    recent chance match, and the guess is up to half the matched length (capped at k): a copied
    passage earns a long guess, a chance 2-token match one token, no match none."""
    from r1lite.speculative import NgramProposer
    p = NgramProposer(2)
    passage = list(range(100, 130))
    # the passage, filler with a chance match of (110, 111) followed by 7, then the passage's
    # first 12 tokens again: the history ends ... 110, 111
    history = passage + [1, 2, 110, 111, 7, 3] + passage[:12]
    got, q = p.propose(history, 8)
    assert q is None
    assert got == passage[12:18]  # 12 tokens matched: 6 proposed, from the passage, not the 7
    assert p.propose(history, 4)[0] == passage[12:16]  # capped at k
    chance = [5, 6, 9, 8, 4, 6, 9]  # (6, 9) seen once, preceded by 5 != 4: matched length 2
    assert p.propose(chance, 8)[0] == [8]
    assert p.propose([1, 2, 3, 4], 8)[0] == []
    # n = 3: a 2-token match does not count
    assert NgramProposer(3).propose(chance, 8)[0] == []
    assert NgramProposer(3).propose(history, 8)[0] == passage[12:18]
