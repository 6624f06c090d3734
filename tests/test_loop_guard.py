"""Reasoning that ends: a scripted model (a bigram chain with R1's real tokenizer) whose reasoning
cycles forever. The loop guard closes the reasoning and the answer follows; a loop in the answer
stops with "repetition"; the DRY sampler breaks the cycle by itself; the thinking budget lands
softly. Ordinary text, and short legitimate repeats, never trigger the guard."""

import json

import numpy as np
import pytest

from r1lite.errors import InvalidArgument
from r1lite.generate import (EFFORT_BUDGETS, LOOP_MIN_REPEATS, LOOP_MIN_TOKENS, THINK_LANDING,
                             LoopGuard, thinking_budget)
from r1lite.model import Model
from r1lite.tokenizer import Tokenizer
from tiny_model import VOCAB, assets_dir

HI = [{"role": "user", "content": "How many r's are in strawberry?"}]
CYCLE = " Wait, let me recount the letters in strawberry again."  # 11 distinct tokens
ANSWER = "The answer is 3"


class BigramCore:
    """A stand-in for the compiled core: the logits depend only on the last fed token. Each
    token's successor gets logit 10, an optional alternative logit 10 - gap, all others -10."""

    threads = 1

    def __init__(self, chain: dict, default: int, alternatives: dict | None = None,
                 gap: float = 3.0, context: int = 4096):
        self.chain, self.default, self.alt, self.gap = chain, default, alternatives or {}, gap
        self.context = context
        self.last = None

    def reset(self):
        self.last = None

    def row(self, last):
        row = np.full(VOCAB, -10.0, dtype=np.float32)
        if last in self.alt:
            row[self.alt[last]] = 10.0 - self.gap
        row[self.chain.get(last, self.default)] = 10.0
        return row

    def forward(self, ids, all_positions=False):
        rows = [self.row(int(t)) for t in ids]
        self.last = int(ids[-1])
        return np.stack(rows) if all_positions else rows[-1]

    # the server engine's batch calls
    def open_sequence(self):
        return 0

    def close_sequence(self, seq_id):
        pass

    def forward_batch(self, segments):
        return [self.row(int(ids[-1])) for _, ids in segments]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_folder(assets_dir())


def chain_of(ids, close_to=None):
    """{ids[i]: ids[i + 1]}, and the last id to close_to (the first: a cycle)."""
    out = {a: b for a, b in zip(ids, ids[1:])}
    out[ids[-1]] = ids[0] if close_to is None else close_to
    return out


def looping_model(tok, alternatives=None, answer_loops=False):
    """Reasoning: CYCLE forever. After "</think>\\n\\n": ANSWER then EOS (or ANSWER forever)."""
    cycle, answer = tok.encode(CYCLE), tok.encode(ANSWER)
    assert len(set(cycle)) == len(cycle) and not set(cycle) & set(answer)
    eos = tok.eos_ids[0]
    close, blank = tok.encode("</think>\n\n")
    chain = {**chain_of(cycle), **chain_of(answer, None if answer_loops else eos),
             close: blank, blank: answer[0]}
    core = BigramCore(chain, default=cycle[0], alternatives=alternatives)
    config = dict(architecture="bigram", vocab_size=VOCAB, context=core.context, num_layers=0,
                  hidden_size=0)
    return Model(core, config, "scripted", tokenizer=tok)


def test_default_settings_end_a_looping_reasoning_and_the_answer_follows(tok):
    m = looping_model(tok)
    g = m.chat(HI, max_new_tokens=2000, seed=0)  # R1 defaults: temperature 0.6, top_p 0.95
    assert g.finish_reason == "stop"
    assert g.answer == ANSWER
    assert g.reasoning.endswith(THINK_LANDING.strip())
    assert g.stats["reasoning_closed_by"] == "loop_guard"
    assert len(g.tokens) < LOOP_MIN_TOKENS + 2 * len(tok.encode(CYCLE)) + 40  # well before 2000
    # streamed alike, the reasoning first
    pieces = [p for p in m.chat_stream(HI, max_new_tokens=2000, seed=0) if p.text]
    assert pieces[0].kind == "reasoning" and pieces[-1].kind == "answer"


def test_without_the_guard_the_loop_runs_to_the_limit(tok):
    m = looping_model(tok)
    g = m.chat(HI, max_new_tokens=600, seed=0, loop_guard=False)
    assert g.finish_reason == "length" and len(g.tokens) == 600 and g.answer == ""


def test_a_loop_in_the_answer_stops_with_repetition(tok):
    m = looping_model(tok, answer_loops=True)
    g = m.chat(HI, max_new_tokens=2000, seed=0, max_thinking_tokens=0)  # straight to the answer
    assert g.finish_reason == "repetition"
    assert g.reasoning == "" and g.answer.startswith(ANSWER + ANSWER)
    n = len(tok.encode(ANSWER))
    assert len(g.tokens) <= max(LOOP_MIN_TOKENS, LOOP_MIN_REPEATS * n) + n
    off = m.chat(HI, max_new_tokens=300, seed=0, max_thinking_tokens=0, loop_guard=False)
    assert off.finish_reason == "length"
    raw = m.generate(tok.encode(ANSWER), max_new_tokens=2000, temperature=0)  # no template
    assert raw.finish_reason == "repetition"


def test_the_dry_sampler_breaks_the_cycle(tok):
    cycle = tok.encode(CYCLE)
    close = tok.encode("</think>")[0]
    # every reasoning token's second choice is </think>, 3 logits below the cycle's next token
    m = looping_model(tok, alternatives={t: close for t in cycle})
    g = m.chat(HI, max_new_tokens=400, temperature=0, loop_guard=False, dry_multiplier=0.8)
    assert g.finish_reason == "stop" and g.answer == ANSWER
    assert g.stats["reasoning_closed_by"] is None  # the model closed it
    # 0.8 * 1.75^(L - 2) > 3 from a repeat of L = 5 tokens: out on the second pass
    assert len(tok.encode(g.reasoning)) < 2 * len(cycle)
    plain = m.chat(HI, max_new_tokens=400, temperature=0, loop_guard=False)
    assert plain.finish_reason == "length"


def test_thinking_budget_lands_softly_at_a_sentence_end(tok):
    m = looping_model(tok)
    close = tok.encode("</think>")[0]
    for budget in (60, 100, 150):
        g = m.chat(HI, max_new_tokens=400, seed=0, max_thinking_tokens=budget, loop_guard=False)
        i = g.tokens.index(close)
        assert i <= budget  # the closing sentence fits the budget
        assert g.reasoning.endswith(THINK_LANDING.strip()) and g.answer == ANSWER
        assert g.stats["reasoning_closed_by"] == "budget"
        before = g.reasoning[:-len(THINK_LANDING.strip())].rstrip()
        assert before.endswith("again.")  # landed where a sentence ends
    # margin 0: as late as the budget allows, i.e. the sentence ends right at it
    g = m.chat(HI, max_new_tokens=400, seed=0, max_thinking_tokens=100, thinking_margin=0,
               loop_guard=False)
    assert g.tokens.index(close) == 100
    # a budget too small for the sentence closes abruptly, right at the budget
    g = m.chat(HI, max_new_tokens=400, seed=0, max_thinking_tokens=8, loop_guard=False)
    assert g.tokens[8:10] == tok.encode("</think>\n\n") and g.answer == ANSWER


def test_reasoning_effort_maps_to_budgets(tok):
    assert thinking_budget(None, "low") == EFFORT_BUDGETS["low"] == 1024
    assert thinking_budget(None, "medium") == 4096 and thinking_budget(None, "high") == 16384
    assert thinking_budget(77, "high") == 77 and thinking_budget(None, None) is None
    with pytest.raises(InvalidArgument) as e:
        thinking_budget(None, "extreme")
    assert e.value.param == "reasoning_effort"
    m = looping_model(tok)
    g = m.chat(HI, max_new_tokens=3000, seed=0, loop_guard=False, reasoning_effort="low")
    assert g.answer == ANSWER and g.tokens.index(tok.encode("</think>")[0]) <= 1024


@pytest.mark.parametrize("kw,param", [
    (dict(loop_guard="yes"), "loop_guard"), (dict(thinking_margin=-1), "thinking_margin"),
    (dict(dry_multiplier=-0.5), "dry_multiplier"), (dict(dry_base=0.9), "dry_base"),
    (dict(dry_allowed_length=0), "dry_allowed_length"),
    (dict(dry_penalty_last_n=-2), "dry_penalty_last_n"),
    (dict(dry_sequence_breakers="\n"), "dry_sequence_breakers"),
    (dict(reasoning_effort="max"), "reasoning_effort")])
def test_bad_arguments_name_their_parameter(tok, kw, param):
    m = looping_model(tok)
    with pytest.raises(InvalidArgument) as e:
        m.chat(HI, max_new_tokens=5, **kw)
    assert e.value.param == param


# -- the guard on its own ------------------------------------------------------------------------

def first_trigger(tokens):
    g = LoopGuard()
    for i, t in enumerate(tokens):
        if g.push(t):
            return i + 1
    return None


def test_guard_thresholds():
    assert first_trigger([7] * 200) == LOOP_MIN_TOKENS  # one token repeated: at 64
    span = list(range(100, 150))  # a 50-token span: its third copy completes the loop
    assert first_trigger(span * 4) == 150
    assert first_trigger(list(range(20)) * 10) == LOOP_MIN_TOKENS
    assert first_trigger(list(range(30)) * 10) == 90  # a span over 21 tokens: 3 times
    assert first_trigger(span * 2 + list(range(300, 340))) is None
    assert first_trigger(list(range(16)) * 3 + [99]) is None  # 48 tokens: fewer than 64
    assert first_trigger(list(range(16)) * 4) == LOOP_MIN_TOKENS


def test_ordinary_text_and_short_repeats_never_trigger(tok):
    root = assets_dir().parent.parent.parent
    texts = [
        *[(root / name).read_text() for name in ("README.md", "docs/ARCH.md", "docs/DESIGN.md",
                                                 "python/r1lite/cli.py", "BENCHMARKS.md")],
        ", ".join(str(i) for i in range(1, 400)),  # a counting list
        "very " * 30 + "good. " + "ha" * 40 + " " + "no, " * 20,  # repeated words
        "| a | b | c | d | e | f | g | h |\n|---|---|---|---|---|---|---|---|\n"
        + "".join(f"| {i} | {i + 1} | x | y | z | {i * 2} | - | . |\n" for i in range(40)),
        "def f(x):\n    return x\n\n" * 3 + "print(f(1))\nprint(f(2))\nprint(f(3))\n",
        "[0, 0, 0, 0],\n" * 4 + "Let me check. " * 4,
    ]
    for text in texts:
        assert first_trigger(tok.encode(text)) is None, text[:60]


# -- the server ----------------------------------------------------------------------------------

def test_server_fields_and_the_repetition_finish(tok):
    from test_server import http, running

    body = dict(model="tiny", messages=HI, max_tokens=1000, max_thinking_tokens=0)
    # the bigram stand-in has one shared sequence and no cache: no prefix reuse
    with running(looping_model(tok, answer_loops=True), cache_ram=0) as (base, _):
        code, r = http("POST", base + "/v1/chat/completions", body)
        assert code == 200, r
        choice = r["choices"][0]
        assert choice["finish_reason"] == "stop" and choice["r1lite_finish_detail"] == "repetition"
        assert choice["message"]["content"].startswith(ANSWER + ANSWER)
        code, r = http("POST", base + "/v1/chat/completions", {**body, "loop_guard": False,
                                                               "max_tokens": 200})
        assert r["choices"][0]["finish_reason"] == "length"
        assert "r1lite_finish_detail" not in r["choices"][0]
        code, r = http("POST", base + "/v1/completions",
                       dict(model="tiny", prompt=ANSWER, max_tokens=1000, temperature=0))
        assert r["choices"][0]["finish_reason"] == "stop"
        assert r["choices"][0]["r1lite_finish_detail"] == "repetition"
        import urllib.request
        req = urllib.request.Request(base + "/v1/chat/completions", method="POST",
                                     data=json.dumps({**body, "stream": True}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            events = [json.loads(line[6:]) for line in resp.read().decode().splitlines()
                      if line.startswith("data: {")]
        last = events[-1]["choices"][0]
        assert last["finish_reason"] == "stop" and last["r1lite_finish_detail"] == "repetition"
        for change, param in [(dict(dry_base=0.5), "dry_base"), (dict(loop_guard="no"), "loop_guard"),
                              (dict(dry_allowed_length=0), "dry_allowed_length"),
                              (dict(dry_penalty_last_n=-7), "dry_penalty_last_n"),
                              (dict(reasoning_effort="max"), "reasoning_effort"),
                              (dict(thinking_margin=-1), "thinking_margin")]:
            code, r = http("POST", base + "/v1/chat/completions", {**body, **change})
            assert code == 400 and r["error"]["param"] == param, (change, r)

    cycle, close = tok.encode(CYCLE), tok.encode("</think>")[0]
    with running(looping_model(tok, alternatives={t: close for t in cycle}), cache_ram=0) as (base, _):
        body = dict(model="tiny", messages=HI, max_tokens=400, temperature=0, loop_guard=False)
        code, r = http("POST", base + "/v1/chat/completions", {**body, "dry_multiplier": 0.8,
                                                               "dry_base": 1.75,
                                                               "dry_allowed_length": 2,
                                                               "dry_penalty_last_n": -1})
        assert code == 200 and r["choices"][0]["message"]["content"] == ANSWER
        code, r = http("POST", base + "/v1/chat/completions", {**body, "reasoning_effort": "low",
                                                               "thinking_margin": 0,
                                                               "max_tokens": 1200})
        assert r["choices"][0]["message"]["content"] == ANSWER
        assert r["usage"]["completion_tokens"] == 1024 + 2 + len(tok.encode(ANSWER))


# -- defaults that fit the model -------------------------------------------------------------------

def test_sampling_defaults_fit_the_model(tok):
    from r1lite.sampling import FALLBACK_DEFAULTS, defaults_from_generation_config

    r1 = defaults_from_generation_config(None, r1_family=True)  # a GGUF R1: no generation config
    assert r1["temperature"] == 0.6 and r1["top_p"] == 0.95 and r1["top_k"] == 0
    silent = defaults_from_generation_config({"do_sample": True, "bos_token_id": 1}, r1_family=True)
    assert silent["temperature"] == 0.6 and silent["top_p"] == 0.95
    own = defaults_from_generation_config({"temperature": 0.7, "top_p": 0.8}, r1_family=True)
    assert own["temperature"] == 0.7 and own["top_p"] == 0.8  # the file's values win
    assert defaults_from_generation_config(None) == FALLBACK_DEFAULTS  # others: llama.cpp's
    assert defaults_from_generation_config({"temperature": 0.3})["top_p"] == 1.0
    m = looping_model(tok)
    assert m.sampling_defaults()["temperature"] == 0.6
    bare = Tokenizer.from_folder(assets_dir())
    bare.generation_config = {}
    assert looping_model(bare).sampling_defaults() == r1
