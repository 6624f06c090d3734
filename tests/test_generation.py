"""generate / chat / stream: transformers' greedy tokens, stopping, budgets, interrupts."""

import os
import signal
import threading

import numpy as np
import pytest

import r1lite
from conftest import fixture_dirs

FIXTURES = fixture_dirs()
HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("folder", FIXTURES, ids=[d.name for d in FIXTURES])
def test_greedy_generation_equals_transformers(folder):
    """With the default (f16) cache; one random MoE fixture needs the exact cache: there a key
    rounded to 16 bits flips an expert choice within the 24 tokens, which moves the logits by
    far more than the f16 rounding itself (dense fixtures keep greedy equality at f16)."""
    oracle = np.load(folder / "oracle.npz")
    exact = folder.name == "deepseek_v2_group_limited_bf16_sharded"
    model = r1lite.load(folder, kv_cache="f32" if exact else None)
    want = oracle["greedy_tokens"].tolist()
    g = model.generate(oracle["greedy_prompt"].tolist(), max_new_tokens=len(want), temperature=0)
    assert g.tokens == want
    assert g.finish_reason == "length"
    assert g.stats["prompt_tokens"] == len(oracle["greedy_prompt"])
    assert g.stats["generated_tokens"] == len(want)


def test_chat_forces_reasoning_open_and_splits(tiny_r1_model):
    m = tiny_r1_model
    g = m.chat(HI, max_new_tokens=12, seed=0)
    assert g.finish_reason == "length" and len(g.tokens) == 12
    # the January template ends with <｜Assistant｜>; r1lite adds "<think>\n" so all is reasoning
    assert g.reasoning and g.answer == ""
    assert g.text.strip() == g.reasoning


def test_thinking_budget_closes_the_block(tiny_r1_model):
    m = tiny_r1_model
    close = m.tokenizer.encode("</think>\n\n")
    g = m.chat(HI, max_new_tokens=15, seed=0, max_thinking_tokens=5)
    assert g.tokens[5:5 + len(close)] == close
    assert g.reasoning and g.answer
    pieces = list(m.chat_stream(HI, max_new_tokens=15, seed=0, max_thinking_tokens=5))
    assert [p.kind for p in pieces if p.text][0] == "reasoning"
    assert [p.kind for p in pieces if p.text][-1] == "answer"
    assert sum(len(p.tokens) for p in pieces) == 15


def test_skip_thinking_prefills_an_empty_block(tiny_r1_model):
    m = tiny_r1_model
    prompt = m.chat_prompt(HI, max_thinking_tokens=0)
    assert m.tokenizer.decode(prompt.ids).endswith("<｜Assistant｜><think>\n\n</think>\n\n")
    assert not prompt.inside_think and m.chat_prompt(HI).inside_think


def test_revised_template_is_not_opened_twice(tmp_path):
    from tiny_model import build_tiny_r1

    m = r1lite.load(build_tiny_r1(tmp_path / "rev", revised_template=True), context=512)
    prompt = m.chat_prompt(HI)
    assert prompt.inside_think
    text = m.tokenizer.decode(prompt.ids)
    assert text.endswith("<｜Assistant｜><think>\n") and text.count("<think>") == 1
    g = m.chat(HI, max_new_tokens=6, seed=0)
    assert g.reasoning and g.answer == ""


def test_seed_reproduces_and_streams_add_up(tiny_r1_model):
    m = tiny_r1_model
    a = m.generate("Once upon a time", max_new_tokens=10, temperature=1.0, seed=42)
    b = m.generate("Once upon a time", max_new_tokens=10, temperature=1.0, seed=42)
    assert a.tokens == b.tokens and a.text == b.text
    s = m.stream("Once upon a time", max_new_tokens=10, temperature=1.0, seed=42)
    pieces = list(s)
    assert "".join(p.text for p in pieces).strip() == (a.answer or a.reasoning)
    assert s.generation.tokens == a.tokens


def test_stop_string_is_not_included(tiny_r1_model):
    m = tiny_r1_model
    full = m.generate("Once upon a time", max_new_tokens=12, temperature=0)
    stop = full.text[5:9]
    assert stop.strip()
    g = m.generate("Once upon a time", max_new_tokens=12, temperature=0, stop=[stop, "zzzz"])
    assert g.finish_reason == "stop"
    assert g.text == full.text[:full.text.index(stop)]
    assert stop not in g.text


def test_eos_stops(tiny_r1_model, monkeypatch):
    m = tiny_r1_model
    first = m.generate("Hello", max_new_tokens=1, temperature=0).tokens[0]
    monkeypatch.setattr(m.tokenizer, "eos_ids", [first])
    g = m.generate("Hello", max_new_tokens=5, temperature=0)
    assert g.finish_reason == "stop" and g.tokens == []


def test_end_of_context_is_length_not_error(tiny_r1):
    m = r1lite.load(tiny_r1, context=12)
    g = m.generate("One two three", max_new_tokens=100, temperature=0)
    assert g.finish_reason == "length"
    assert g.stats["prompt_tokens"] + len(g.tokens) == 13  # the last token is sampled, not fed


def test_prompt_longer_than_context(tiny_r1):
    m = r1lite.load(tiny_r1, context=8)
    with pytest.raises(ValueError, match="context"):
        m.generate("one two three four five six seven eight nine ten eleven")


@pytest.mark.parametrize("kw,match", [
    (dict(temperature=-1), "temperature"), (dict(top_p=0), "top_p"), (dict(top_p=1.01), "top_p"),
    (dict(max_new_tokens=0), "max_new_tokens"), (dict(max_thinking_tokens=-1), "max_thinking"),
    (dict(stop=[""]), "stop"), (dict(repetition_penalty=-1), "repetition_penalty")])
def test_bad_arguments(tiny_r1_model, kw, match):
    with pytest.raises(ValueError, match=match):
        tiny_r1_model.generate("Hi", **kw)


def test_bad_prompts(tiny_r1_model):
    m = tiny_r1_model
    with pytest.raises(ValueError, match="empty"):
        m.generate("")
    with pytest.raises(ValueError, match="vocabulary"):
        m.generate([1, 10**7])
    with pytest.raises(ValueError, match="role"):
        m.chat([{"role": "robot", "content": "hi"}])


def test_one_shot_helpers(tiny_r1):
    g = r1lite.generate(tiny_r1, "Hello", max_new_tokens=3, temperature=0, context=64)
    assert len(g.tokens) == 3
    g = r1lite.chat(tiny_r1, HI, max_new_tokens=3, temperature=0, context=64)
    assert len(g.tokens) == 3


def test_ctrl_c_stops_generation_and_the_model_stays_usable(tiny_r1_model):
    m = tiny_r1_model
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        m.generate("Hello", max_new_tokens=3000, temperature=1.0, seed=1, loop_guard=False)
    timer.join()
    a = m.generate("Hello", max_new_tokens=5, temperature=0)
    b = r1lite.load(m.source, context=64).generate("Hello", max_new_tokens=5, temperature=0)
    assert a.tokens == b.tokens


def test_threads_sharing_a_model_do_not_corrupt_each_other(tiny_r1_model):
    m = tiny_r1_model
    prompts = ["Once upon a time", "The capital of", "In 1905 Einstein", "def main():"]
    alone = [m.generate(p, max_new_tokens=12, temperature=0).tokens for p in prompts]
    results = [None] * len(prompts)

    def work(i):
        results[i] = m.generate(prompts[i], max_new_tokens=12, temperature=0).tokens
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone


def test_unfinished_stream_in_the_same_thread_is_an_error_not_a_deadlock(tiny_r1_model):
    m = tiny_r1_model
    s = m.stream("Hello", max_new_tokens=20, temperature=0)
    next(s)
    with pytest.raises(RuntimeError, match="stream"):
        m.generate("Hi", max_new_tokens=2)
    s.close()
    assert len(m.generate("Hi", max_new_tokens=2, temperature=0).tokens) == 2


def test_seeded_sampling_is_the_same_with_1_and_2_threads(tiny_r1):
    one = r1lite.load(tiny_r1, threads=1, context=256)
    two = r1lite.load(tiny_r1, threads=2, context=256)
    kw = dict(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=123)
    assert one.generate("Once upon a time", **kw).tokens == two.generate("Once upon a time", **kw).tokens


def test_prompts_know_when_they_end_inside_think(tiny_r1_model):
    """Model's public prompt builders: text, ids and chat agree on inside_think."""
    m = tiny_r1_model
    chat = m.chat_prompt(HI)
    assert m.text_prompt(chat.ids) == chat
    assert m.text_prompt(m.tokenizer.decode(chat.ids)).inside_think
    assert not m.text_prompt("Once upon a time").inside_think
    with pytest.raises(TypeError, match="Prompt"):
        m.new_sequence(chat.ids)
    assert m.device_name is None
    with pytest.raises(RuntimeError, match="CPU"):
        m.copy_bandwidth()


def test_logprobs_are_the_log_softmax_of_transformers_logits(qwen2_dir):
    """prompt_logprobs against the stored transformers logits (oracle.npz) of the fixture's token
    sequence; each generated token's logprob against the log-softmax of the model's logits."""
    from r1lite.logprobs import log_softmax

    oracle = np.load(qwen2_dir / "oracle.npz")
    tokens = oracle["tokens"].tolist()
    want = log_softmax(oracle["logits"])  # [position, vocab]: predicts the next token
    model = r1lite.load(qwen2_dir, kv_cache="f32")
    g = model.generate(tokens, max_new_tokens=0, logprobs=5, prompt_logprobs=True)
    assert g.tokens == [] and g.prompt_logprobs[0] is None and len(g.prompt_logprobs) == len(tokens)
    for i, e in enumerate(g.prompt_logprobs[1:], 1):
        assert e.token == tokens[i] and abs(e.logprob - want[i - 1, tokens[i]]) < 1e-4
        order = np.argsort(-want[i - 1], kind="stable")[:5]
        assert [t for t, _ in e.top] == order.tolist()
        np.testing.assert_allclose([lp for _, lp in e.top], want[i - 1, order], atol=1e-4)
    g = model.generate(tokens[:6], max_new_tokens=4, temperature=1.0, seed=3, logprobs=2)
    mine = log_softmax(model.logits(tokens[:6] + g.tokens))
    for j, e in enumerate(g.logprobs):
        assert e.token == g.tokens[j] and abs(e.logprob - mine[5 + j, e.token]) < 1e-9
        assert e.top[0][1] >= e.top[1][1] and e.top[0][1] >= e.logprob


@pytest.mark.parametrize("kw,param", [(dict(logprobs=21), "logprobs"), (dict(logprobs=True), "logprobs"),
                                      (dict(prompt_logprobs=True), "prompt_logprobs"),
                                      (dict(max_new_tokens=0, logprobs=1), "max_new_tokens"),
                                      (dict(logit_bias={"151936": 1}), "logit_bias"),
                                      (dict(presence_penalty=3), "presence_penalty")])
def test_bad_logprob_and_penalty_arguments(tiny_r1_model, kw, param):
    with pytest.raises(ValueError) as e:
        tiny_r1_model.generate("Hi", **kw)
    assert e.value.param == param
