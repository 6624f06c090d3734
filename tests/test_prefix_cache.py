"""Prefix reuse across requests (prefix_cache.py): a request whose prompt starts with a finished
request's tokens reuses those cache rows, and its output is identical to a cold run's (greedy) —
dense and MLA + MoE models, a chat's next turn through the server (R1's template drops the
earlier reasoning), eviction under the memory cap, hits in /metrics."""

import threading
import time

import numpy as np
import openai
import pytest
from test_server import running
from test_server_metrics import scrape, value

import r1lite
from conftest import FIXTURES
from r1lite.engine import Engine, Request


def generate(engine, prompt, n=6):
    """Greedy tokens of one request through a running engine."""
    model = engine.model
    seq = model.new_sequence(r1lite.Prompt(list(prompt)), max_new_tokens=n, temperature=0)
    done = threading.Event()
    out = {}

    def on_event(kind, payload):
        if kind in ("done", "error"):
            out[kind] = payload
            done.set()
    req = engine.submit(Request(seq, on_event))
    assert done.wait(120) and "done" in out, out
    return out["done"].tokens, req


@pytest.mark.parametrize("fixture", ["qwen2_f32", "deepseek_v3_f32", "llama3_f32"])
def test_reused_rows_give_the_cold_output(fixture):
    model = r1lite.load(FIXTURES / fixture, threads=2, context=512)
    rng = np.random.default_rng(0)
    first = rng.integers(3, model.config["vocab_size"], 300).tolist()  # more than a prefill chunk
    second = first + rng.integers(3, model.config["vocab_size"], 17).tolist()
    cold = Engine(model, cache_ram=0).start()
    try:
        want_first, _ = generate(cold, first)
        want_second, req = generate(cold, second)
        assert req.reused == 0
        want_again, _ = generate(cold, first)
    finally:
        cold.stop()
    warm = Engine(model).start()
    try:
        assert generate(warm, first)[0] == want_first
        got, req = generate(warm, second)  # the first request's prompt and answer are cached
        assert req.reused == 300 and got == want_second
        got, req = generate(warm, first)  # all but the last prompt token reused
        assert req.reused == 299 and got == want_again
        assert warm.prefix.hits == 2 and warm.prefix.lookups == 3
    finally:
        warm.stop()


def test_eviction_under_the_cap():
    model = r1lite.load(FIXTURES / "qwen2_f32", threads=2, context=2048)
    page = 256 * model.kv_bytes_per_token
    engine = Engine(model, cache_ram=2 * page).start()
    try:
        prompts = [[5 + i] * 300 for i in range(3)]  # two pages each once answered
        for p in prompts:
            generate(engine, p, n=2)
        assert len(engine.prefix.parked) == 1 and engine.prefix.bytes == 2 * page
        assert generate(engine, prompts[2] + [9], n=2)[1].reused == 300  # the newest stays
        assert generate(engine, prompts[0] + [9], n=2)[1].reused == 0  # evicted
    finally:
        engine.stop()
    with pytest.raises(ValueError, match="cache_ram"):
        Engine(model, cache_ram=-1)


def test_a_chat_turn_reuses_the_conversation(tiny_r1):
    """Turn 2 of an R1 chat through the server: the template drops turn 1's reasoning, so the
    cached rows up to turn 1's assistant marker are reused; the answer equals a cold server's."""
    model = r1lite.load(tiny_r1, threads=2, context=2048)
    turn1 = [{"role": "user", "content": "Tell me about the sea. " * 40}]

    def conversation(url):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="tiny", messages=turn1, max_tokens=12, temperature=0)
        turn2 = turn1 + [{"role": "assistant", "content": first.choices[0].message.content},
                         {"role": "user", "content": "And the sky?"}]
        second = client.chat.completions.create(model="tiny", messages=turn2, max_tokens=12, temperature=0)
        return first, second

    with running(model, cache_ram=0) as (url, _):
        cold = conversation(url)
    with running(model) as (url, _):
        warm = conversation(url)
        m = scrape(url)
    for c, w in zip(cold, warm):
        assert c.choices[0].message.content == w.choices[0].message.content
        assert c.choices[0].message.reasoning_content == w.choices[0].message.reasoning_content
    assert value(m, "r1lite_prefix_cache_lookups_total") == 2
    assert value(m, "r1lite_prefix_cache_hits_total") == 1
    reused = value(m, "r1lite_prefix_cache_reused_tokens_total")
    # turn 1's prompt, up to where its reasoning began, is turn 2's prefix
    assert cold[0].usage.prompt_tokens - 3 <= reused < cold[1].usage.prompt_tokens


def test_fork_copies_a_prefix():
    model = r1lite.load(FIXTURES / "deepseek_v3_f32", threads=2, context=1024)
    rng = np.random.default_rng(1)
    ids = rng.integers(3, model.config["vocab_size"], 600).tolist()  # three cache pages
    want = model.logits(ids)
    with model.batch() as b:
        a = b.open_sequence()
        b.forward_batch([(a, ids[:520])])
        f = b.fork_sequence(a, 300)
        got = b.forward_batch([(f, ids[300:])])[0]
        assert np.array_equal(got, want[-1])  # the copied rows are the rows
        np.testing.assert_array_equal(b.forward_batch([(a, ids[520:])])[0], want[-1])  # a is intact
        with pytest.raises(ValueError, match="cannot copy 601 positions"):
            b.fork_sequence(a, 601)


def generate_together(engine, prompts, seeds, n=6):
    """Greedy-or-seeded tokens of several requests submitted at once."""
    model = engine.model
    events, reqs = [], []
    for prompt, seed in zip(prompts, seeds):
        seq = model.new_sequence(r1lite.Prompt(list(prompt)), max_new_tokens=n, temperature=0.9, seed=seed)
        done, out = threading.Event(), {}

        def on_event(kind, payload, done=done, out=out):
            if kind in ("done", "error"):
                out[kind] = payload
                done.set()
        reqs.append(Request(seq, on_event))
        events.append((done, out))
    for req in reqs:
        engine.submit(req)
    results = []
    for done, out in events:
        assert done.wait(120) and "done" in out, out
        results.append(out["done"].tokens)
    return results, reqs


def test_n_choices_compute_their_prompt_once():
    model = r1lite.load(FIXTURES / "qwen2_f32", threads=2, context=1024)
    prompt = np.random.default_rng(2).integers(3, model.config["vocab_size"], 400).tolist()
    cold = Engine(model, cache_ram=0).start()
    try:
        want, _ = generate_together(cold, [prompt] * 3, [1, 2, 3])
    finally:
        cold.stop()
    warm = Engine(model).start()
    try:
        got, reqs = generate_together(warm, [prompt] * 3, [1, 2, 3])
    finally:
        warm.stop()
    assert got == want and len({tuple(t) for t in got}) > 1  # seeds differ, outputs identical to cold
    assert sorted(r.reused for r in reqs) == [0, 399, 399]  # the leader computed it; two copies


def test_a_running_conversation_is_shared():
    """A request arriving while another still answers the same prompt copies its cache rows."""
    model = r1lite.load(FIXTURES / "llama3_f32", threads=2, context=1024)
    prompt = np.random.default_rng(3).integers(3, model.config["vocab_size"], 200).tolist()
    engine = Engine(model).start()
    try:
        long_seq = model.new_sequence(r1lite.Prompt(prompt), max_new_tokens=200, temperature=0)
        first = engine.submit(Request(long_seq, lambda kind, payload: None))
        deadline = time.time() + 120
        while not first.token_times:  # answering: its prompt is in its cache
            assert time.time() < deadline
            time.sleep(0.01)
        tokens, req = generate(engine, prompt + [7, 8, 9], n=4)
        assert req.reused == len(prompt)  # copied from the running request
        first.cancel()
    finally:
        engine.stop()
    cold = Engine(model, cache_ram=0).start()
    try:
        assert generate(cold, prompt + [7, 8, 9], n=4)[0] == tokens
    finally:
        cold.stop()
