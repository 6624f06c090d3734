"""Speculative decoding in the server's engine (batch_speculation.py): the batch's all-positions
segments against single-sequence passes, greedy and seeded outputs equal to the engine without
speculation (concurrent requests, chunked prompts, prompt lookup and DeepSeek's MTP module), the
MTP module's guesses against a cold pass, adaptive k, and the HTTP API with and without --spec."""

import importlib
import threading
import time

import numpy as np
import openai
import pytest
from conftest import FIXTURES, rel_err
from test_mtp import mtp_logits
from test_server import http, running, start_serve

import r1lite
from r1lite import batch_speculation
from r1lite.batch_speculation import PROBE_MAX_WAIT, AdaptiveK, BatchSpeculation
from r1lite.engine import Engine, Request
from r1lite.errors import InvalidArgument
from r1lite.session import Batch

engine_module = importlib.import_module("r1lite.engine")
DENSE, MLA, MTP = FIXTURES / "qwen2_f32", FIXTURES / "deepseek_v3_f32", FIXTURES / "deepseek_v3_mtp_f32"


def looping_prompts(vocab: int, count: int, seed: int = 0) -> list:
    """Prompts of random phrases repeated in random order (prompt lookup finds guesses), and one
    of random tokens."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(0, vocab, int(rng.integers(4, 9))).tolist() for _ in range(4)]
    out = [sum((phrases[int(i)] for i in rng.integers(0, 4, 6 + 2 * j)), []) for j in range(count - 1)]
    return out + [rng.integers(0, vocab, 23).tolist()]


def serve_all(model, prompts, speculative=None, max_batch=4, cache_ram=1 << 30, each=None, **kw):
    """Each prompt (token ids) through one Engine, all submitted before it starts, with the
    generation keywords kw (each[i] added for prompt i): the Generations in order, and the
    engine."""
    engine = Engine(model, max_batch=max_batch, cache_ram=cache_ram, speculative=speculative)
    results, pieces = {}, {}
    for i, p in enumerate(prompts):
        seq = model.new_sequence(model.text_prompt(p), **kw, **(each[i] if each else {}))

        def on_event(kind, payload, i=i):
            if kind == "pieces":
                pieces.setdefault(i, []).extend(payload)
            else:
                results[i] = payload
        engine.submit(Request(seq, on_event))
    engine.start()
    deadline = time.time() + 120
    while len(results) < len(prompts):
        assert time.time() < deadline, "the engine did not finish"
        time.sleep(0.01)
    engine.stop()
    for i, g in results.items():
        assert not isinstance(g, str), g  # an "error" event
        assert "".join(p.text for p in pieces.get(i, [])) == g.text, i  # the streamed pieces add up
    return [results[i] for i in range(len(prompts))], engine


# -- the core: several positions of one sequence in a batched pass --------------------------------

@pytest.mark.parametrize("folder", [DENSE, MLA], ids=["dense", "mla_moe"])
def test_all_position_segments_equal_single_passes(folder):
    m = r1lite.load(folder, threads=2, kv_cache="f32")
    V = m.config["vocab_size"]
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, V, n).tolist() for n in (9, 5, 7))
    want_a, want_b, want_c = m.logits(a), m.logits(b), m.logits(c)
    with m.batch() as batch:
        sa, sb, sc = batch.open_sequence(), batch.open_sequence(), batch.open_sequence()
        batch.forward_batch([(sa, a[:4]), (sb, b[:2]), (sc, c[:3])])
        rows = batch.forward_batch([(sa, a[4:], True), (sb, b[2:]), (sc, c[3:], True)])
        hidden = batch.hidden()
    assert rows[0].shape == (5, V) and rows[1].shape == (V,) and rows[2].shape == (4, V)
    assert rel_err(rows[0], want_a[4:]) <= 1e-4
    assert rel_err(rows[1], want_b[-1]) <= 1e-4
    assert rel_err(rows[2], want_c[3:]) <= 1e-4
    assert hidden.shape == (5 + 3 + 4, m.config["hidden_size"])  # every fed row, in order
    with m.session() as s:
        s.reset()
        s.forward(a, True)
        assert rel_err(hidden[:5], s.hidden()[4:]) <= 1e-4


def test_bad_segments_are_refused(tiny_r1_model):
    with tiny_r1_model.batch() as batch:
        sid = batch.open_sequence()
        with pytest.raises(ValueError, match="a segment is"):
            batch.forward_batch([(sid, [1, 2], True, 4)])
        with pytest.raises(ValueError, match="appears twice"):
            batch.forward_batch([(sid, [1], True), (sid, [2], True)])
        with pytest.raises(ValueError, match="no open sequence"):
            batch.forward_batch([(sid + 7, [1], True)])
        assert batch._core.sequence_length(sid) == 0  # nothing was fed
        with pytest.raises(ValueError, match="no MTP module"):
            batch.forward_mtp(sid, [1], np.zeros((1, tiny_r1_model.config["hidden_size"]), np.float32))


# -- the engine ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [256, 8], ids=["one_chunk", "chunked_prompts"])
@pytest.mark.parametrize("spec", ["ngram", {"proposer": "ngram", "k": 2, "n": 2}, "mtp"])
def test_greedy_engine_outputs_equal_plain(spec, chunk, monkeypatch):
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", chunk)
    m = r1lite.load(MTP, threads=2, kv_cache="f32")
    prompts = looping_prompts(m.config["vocab_size"], 5)
    kw = dict(max_new_tokens=40, temperature=0, loop_guard=False)
    want, plain = serve_all(m, prompts, **kw)
    got, engine = serve_all(m, prompts, spec, **kw)
    for w, g in zip(want, got):
        assert g.tokens == w.tokens and g.finish_reason == w.finish_reason
        assert g.stats["spec_steps"] > 0
    assert engine.widest_batch == 4 and engine.proposed > 0
    if spec != "mtp":  # the MTP module of the fixture has random weights: few guesses agree
        assert engine.accepted > 0 and engine.steps < plain.steps


def test_seeded_sampling_equals_plain(tiny_r1_model):
    """The proposals are deterministic, so each position draws once from the target's sampler, as
    without speculation: a seeded request gives the same tokens (speculative.py's rule)."""
    m = tiny_r1_model
    prompts = looping_prompts(1000, 4, seed=3)
    kw = dict(max_new_tokens=30, temperature=0.9, top_k=40, loop_guard=False)
    seeds = [dict(seed=i) for i in range(4)]
    want, _ = serve_all(m, prompts, each=seeds, **kw)
    got, engine = serve_all(m, prompts, "ngram", each=seeds, **kw)
    assert [g.tokens for g in got] == [w.tokens for w in want]
    assert engine.proposed > 0


def test_draft_model_in_the_engine(monkeypatch):
    """A draft model in the engine (the fixture loaded a second time: it guesses what the target
    chooses): greedy and seeded outputs equal to the engine without speculation, chunked prompts,
    four requests at once; each request's sequence in the draft closed when it ends."""
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 8)
    m = r1lite.load(DENSE, threads=2, kv_cache="f32")
    draft = r1lite.load(DENSE, threads=1, kv_cache="f32")
    made = []
    init = batch_speculation.SequenceDraft.__init__

    def recorded(self, *args):
        init(self, *args)
        made.append(self)
    monkeypatch.setattr(batch_speculation.SequenceDraft, "__init__", recorded)
    prompts = looping_prompts(m.config["vocab_size"], 5, seed=5)
    spec = {"proposer": "draft", "draft": draft, "k": 3}
    kw = dict(max_new_tokens=30, temperature=0, loop_guard=False)
    want, plain = serve_all(m, prompts, **kw)
    got, engine = serve_all(m, prompts, spec, **kw)
    assert [g.tokens for g in got] == [w.tokens for w in want]
    assert [g.finish_reason for g in got] == [w.finish_reason for w in want]
    assert engine.widest_batch == 4 and engine.accepted > 0 and engine.steps < plain.steps
    assert len(made) == len(prompts) and all(d.id is None for d in made)
    kw = dict(max_new_tokens=20, temperature=0.9, top_k=40, loop_guard=False)
    seeds = [dict(seed=i) for i in range(len(prompts))]
    want, _ = serve_all(m, prompts, each=seeds, **kw)
    got, engine = serve_all(m, prompts, spec, each=seeds, **kw)
    assert [g.tokens for g in got] == [w.tokens for w in want]
    assert engine.proposed > 0


def test_mtp_guesses_follow_a_cold_pass(monkeypatch):
    """Two requests in one batch, chunked prompts, guesses rejected and (every other step, handed
    the right token) accepted: each row of a request's MTP module equals a cold pass of the model
    and the module over its final tokens (test_mtp's reference-checked mtp_logits)."""
    monkeypatch.setattr(engine_module, "PREFILL_CHUNK", 8)
    m = r1lite.load(MTP, threads=2, kv_cache="f32")
    prompts = looping_prompts(m.config["vocab_size"], 2, seed=5)
    kw = dict(max_new_tokens=30, temperature=0, loop_guard=False)
    want, _ = serve_all(m, prompts, **kw)
    seen, calls = {}, [0]
    forward_mtp = Batch.forward_mtp

    def recording(self, seq_id, ids, hidden):
        j0 = self.mtp_length(seq_id)
        rows = forward_mtp(self, seq_id, ids, hidden)
        for i, row in enumerate(rows):  # position j0 + i, given the token t_{j0+i+1} = ids[i]
            seen.setdefault(seq_id, {})[j0 + i] = (int(ids[i]), row)
        return rows
    proposer = importlib.import_module("r1lite.batch_speculation").SequenceMtp
    propose = proposer.propose

    def helped(self, history, k):
        tokens, q = propose(self, history, k)
        calls[0] += 1
        for p, w in zip(prompts, want):
            i = len(history) - len(p)
            if tokens and calls[0] % 2 and history[:len(p)] == p and i < len(w.tokens):
                tokens = [w.tokens[i]]
        return tokens, q
    monkeypatch.setattr(Batch, "forward_mtp", recording)
    monkeypatch.setattr(proposer, "propose", helped)
    got, engine = serve_all(m, prompts, "mtp", cache_ram=0, **kw)
    assert [g.tokens for g in got] == [w.tokens for w in want]
    assert 0 < engine.accepted < engine.proposed
    assert len(seen) == 2
    for rows in seen.values():
        # the request whose tokens t_{j+1} these rows were given
        tokens = next((t for t in (p + w.tokens for p, w in zip(prompts, want))
                       if all(rows[j][0] == t[j + 1] for j in rows)), None)
        assert tokens is not None and len(rows) > 20
        cold = mtp_logits(m, np.asarray(tokens, np.int32), 1000)
        for j, (_, row) in rows.items():
            assert rel_err(row, cold[j]) <= 1e-4, j


def test_mtp_prefix_reuse_stays_exact():
    """A later request with the same prompt reuses the cached prefix as far as the MTP module's
    cache covers it, and its output is unchanged."""
    m = r1lite.load(MTP, threads=2, kv_cache="f32")
    prompt = looping_prompts(m.config["vocab_size"], 2, seed=7)[0]
    kw = dict(max_new_tokens=20, temperature=0, loop_guard=False)
    want, _ = serve_all(m, [prompt], **kw)
    engine = Engine(m, max_batch=2, speculative="mtp").start()
    try:
        for _ in range(2):
            done = []
            engine.submit(Request(m.new_sequence(m.text_prompt(prompt), **kw),
                                  lambda kind, g: done.append(g) if kind != "pieces" else None))
            deadline = time.time() + 60
            while not done:
                assert time.time() < deadline
                time.sleep(0.01)
            assert done[0].tokens == want[0].tokens
        assert engine.prefix.reused_tokens > 0
    finally:
        engine.stop()


class Never:
    """A proposer whose guesses are never the token chosen: the greedy answer's token + 1."""

    def __init__(self, prompt, answer):
        self.prompt, self.answer = prompt, answer

    def propose(self, history, k):
        i = len(history) - len(self.prompt)
        return [(t + 1) % 1000 for t in self.answer[i:i + k]], None


class Always(Never):
    def propose(self, history, k):
        i = len(history) - len(self.prompt)
        return self.answer[i:i + k], None


@pytest.mark.parametrize("kind", [Never, Always])
def test_adaptive_k(tiny_r1_model, kind):
    """A never-accepting proposer soon stops costing verification positions (a probe now and
    then); an always-accepting one keeps proposing k_max tokens a step."""
    m = tiny_r1_model
    prompt = looping_prompts(1000, 2, seed=11)[1]
    kw = dict(max_new_tokens=160, temperature=0, loop_guard=False)
    (want,), plain = serve_all(m, [prompt], **kw)

    class Spec(BatchSpeculation):
        def proposer_for(self, batch, seq_id, draft_batch=None):
            return kind(prompt, want.tokens)
    (got,), engine = serve_all(m, [prompt], Spec("ngram", 4), **kw)
    assert got.tokens == want.tokens
    extra = engine.positions - plain.positions  # verification positions speculation cost
    assert extra == engine.proposed - engine.accepted
    if kind is Never:
        assert engine.accepted == 0 and engine.steps == plain.steps
        # 4 + 3 + 2 + 2 + 1 + 1 while the rate falls below 1/5, then one-token probes after 4, 8,
        # 16, 32 and 64 steps: 18 (a fixed k = 4 would verify 4 a step, 640)
        assert extra <= 18, extra
    else:
        assert extra == 0 and engine.accepted == engine.proposed
        assert engine.proposed >= 4 * got.stats["spec_steps"] - 3  # k stays at k_max (4)
        assert engine.steps <= plain.steps // 4  # five tokens a step


def test_adaptive_k_rule():
    a = AdaptiveK(4)
    assert a.next_k() == 4
    for _ in range(6):
        a.verified(a.next_k() or 1, 0)
    assert a.rate < 0.2 and a.next_k() == 0
    ks = [a.next_k() for _ in range(4)]  # waits PROBE_WAIT steps, then probes with one token
    assert ks == [0, 0, 0, 1]
    a.verified(1, 0)  # a rejected probe doubles the wait
    assert [a.next_k() for _ in range(9)] == [0] * 8 + [1]
    a.verified(1, 1)
    a.verified(a.next_k() or 1, 1)
    assert a.next_k() >= 1  # accepted guesses raise the rate again
    b = AdaptiveK(1)
    verified = 0
    for _ in range(400):
        if b.next_k():
            b.verified(1, 0)
            verified += 1
    # 3 while the rate falls to 1/2, then probes after 4, 8, 16, 32 steps and every 64 from then on
    assert b.wait == PROBE_MAX_WAIT and verified == 3 + 4 + (400 - 3 - 64) // 65


def test_cancelled_speculating_request_leaves_the_others_exact(tiny_r1_model):
    m = tiny_r1_model
    prompts = looping_prompts(1000, 3, seed=13)
    kw = dict(max_new_tokens=60, temperature=0, loop_guard=False)
    want, _ = serve_all(m, prompts, **kw)
    engine = Engine(m, max_batch=4, speculative="ngram")
    results, reqs = {}, []
    for i, p in enumerate(prompts):
        def on_event(kind, payload, i=i):
            if kind == "pieces" and i == 0:
                reqs[0].cancel()  # the client goes away at its first text
            elif kind != "pieces":
                results[i] = payload
        reqs.append(engine.submit(Request(m.new_sequence(m.text_prompt(p), **kw), on_event)))
    engine.start()
    deadline = time.time() + 60
    while len(results) < 2:
        assert time.time() < deadline
        time.sleep(0.01)
    engine.stop()
    assert 0 not in results
    assert [results[i].tokens for i in (1, 2)] == [want[1].tokens, want[2].tokens]


def test_bad_engine_settings_are_refused(tiny_r1_model):
    for spec, match in (("draft", "needs a draft model"),
                        ({"proposer": "draft", "draft": tiny_r1_model}, "another Model object"),
                        ({"proposer": "ngram", "k": 0}, "k must be an integer >= 1"),
                        ("mtp", "multi-token-prediction module"),
                        ("magic", "unknown speculative proposer"),
                        (3, "must be \"ngram\", \"mtp\" or a dict")):
        with pytest.raises(InvalidArgument, match=match):
            Engine(tiny_r1_model, speculative=spec)


# -- the HTTP API ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def urls(tiny_r1):
    """(plain server, speculating server) on the tiny R1 model."""
    with running(r1lite.load(tiny_r1, threads=1, context=512), max_batch=4) as (plain, _):
        spec = {"proposer": "ngram", "k": 3}
        with running(r1lite.load(tiny_r1, threads=1, context=512), max_batch=4,
                     speculative=spec) as (fast, srv):
            yield plain, fast, srv


def clients(urls):
    return [openai.OpenAI(base_url=u + "/v1", api_key="unused", max_retries=0) for u in urls[:2]]


MESSAGES = [[{"role": "user", "content": text}] for text in
            ("Hi", "Say the alphabet twice: a b c d e f g, a b c d e f g.", "Repeat: one two one two",
             "1 2 3 1 2 3 1 2 3")]


def test_http_greedy_with_and_without_spec(urls):
    plain, fast = clients(urls)
    kw = dict(model="tiny", max_tokens=48, temperature=0, extra_body={"max_thinking_tokens": 16})
    want = [plain.chat.completions.create(messages=m, **kw).choices[0] for m in MESSAGES]
    got = [None] * len(MESSAGES)

    def ask(i):
        got[i] = fast.chat.completions.create(messages=MESSAGES[i], **kw).choices[0]
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(MESSAGES))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w, g in zip(want, got):
        assert (g.message.content, g.message.reasoning_content, g.finish_reason) == \
            (w.message.content, w.message.reasoning_content, w.finish_reason)
    engine = urls[2].engine
    assert engine.accepted > 0
    import urllib.request
    with urllib.request.urlopen(urls[1] + "/metrics", timeout=30) as r:
        text = r.read().decode()
    counts = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("r1lite_speculative_")}
    assert counts["r1lite_speculative_proposed_tokens_total"] == engine.proposed
    assert counts["r1lite_speculative_accepted_tokens_total"] == engine.accepted


def test_http_streaming_stops_and_logprobs(urls):
    plain, fast = clients(urls)
    kw = dict(model="tiny", messages=MESSAGES[1], max_tokens=40, temperature=0,
              extra_body={"max_thinking_tokens": 8})
    whole = plain.chat.completions.create(**kw).choices[0].message
    content, reasoning = "", ""
    for chunk in fast.chat.completions.create(**kw, stream=True):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
    assert (content, reasoning) == (whole.content, whole.reasoning_content)
    stop = whole.content[4:8]
    assert stop
    a, b = (c.chat.completions.create(**kw, stop=[stop]).choices[0] for c in (plain, fast))
    assert (b.message.content, b.finish_reason) == (a.message.content, a.finish_reason)
    assert a.finish_reason == "stop" and stop not in a.message.content
    a, b = (c.chat.completions.create(**kw, logprobs=True, top_logprobs=2).choices[0].logprobs.content
            for c in (plain, fast))
    assert [(t.token, round(t.logprob, 4), [x.token for x in t.top_logprobs]) for t in b] == \
        [(t.token, round(t.logprob, 4), [x.token for x in t.top_logprobs]) for t in a]


def test_http_sampled_choices_and_structured_output(urls):
    plain, fast = clients(urls)
    kw = dict(model="tiny", messages=MESSAGES[2], max_tokens=24, temperature=0.8, seed=5, n=3,
              extra_body={"max_thinking_tokens": 4})
    a, b = (c.chat.completions.create(**kw) for c in (plain, fast))
    assert [x.message.content for x in b.choices] == [x.message.content for x in a.choices]
    kw = dict(model="tiny", messages=MESSAGES[3], max_tokens=30, temperature=0,
              response_format={"type": "json_object"}, extra_body={"max_thinking_tokens": 4})
    a, b = (c.chat.completions.create(**kw).choices[0] for c in (plain, fast))
    assert (b.message.content, b.finish_reason) == (a.message.content, a.finish_reason)
    body = dict(model="tiny", prompt="a b c a b c a b c", max_tokens=20, temperature=0)
    (ca, a), (cb, b) = (http("POST", u + "/v1/completions", body) for u in urls[:2])
    assert ca == cb == 200 and a["choices"] == b["choices"]


# -- the command line -----------------------------------------------------------------------------

def test_serve_spec_flags_are_checked_before_loading(tmp_path, capsys):
    from r1lite.cli import main

    missing = str(tmp_path / "no-such-model")  # a flag error comes before the model is looked at
    for extra, match in ((["--spec", "draft"], "--spec draft needs --draft MODEL"),
                         (["--draft", missing, "--ray"], "not supported with --ray"),
                         (["--spec", "mtp", "--spec-k", "2"], "--spec-k must be 1 with --spec mtp"),
                         (["--spec-k", "2"], "need --spec ngram or --draft MODEL"),
                         (["--spec", "ngram", "--spec-n", "0"], "--spec-n must be >= 1"),
                         (["--spec", "fast"], "--spec must be ngram or mtp"),
                         (["--spec", "ngram", "--ray"], "not supported with --ray")):
        assert main(["serve", missing, "--port", "0"] + extra) == 1
        assert match in capsys.readouterr().err, extra
    assert main(["serve", str(DENSE), "--port", "0", "--spec", "mtp"]) == 1
    assert "multi-token-prediction module" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--spec", "ngram", "--spec-k", "3", "--spec-n", "2"], ["--draft"]],
                         ids=["ngram", "draft"])
def test_serve_command_with_spec(tiny_r1, flags):
    """r1lite serve --spec ngram (or --draft MODEL: here the model itself, loaded again) answers
    as the Python API does without speculation."""
    import signal

    direct = r1lite.load(tiny_r1, threads=1, context=256)
    want = direct.generate("a b c a b c a b c", max_new_tokens=16, temperature=0).text
    if flags == ["--draft"]:
        flags = ["--draft", str(tiny_r1)]
    proc, url = start_serve(tiny_r1, "--name", "tiny", "--quiet", *flags)
    try:
        code, reply = http("POST", url + "/v1/completions",
                           dict(model="tiny", prompt="a b c a b c a b c", max_tokens=16, temperature=0))
        assert code == 200 and reply["choices"][0]["text"] == want
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
