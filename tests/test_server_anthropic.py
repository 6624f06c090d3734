"""POST /v1/messages through the official anthropic client: R1's reasoning as a thinking block
and the answer as a text block (plain and streamed) equal to the Python API's and the OpenAI
endpoint's, system prompts, stop sequences, max_tokens, the thinking budget, count_tokens,
x-api-key auth, and errors in Anthropic's shape naming the field."""

import anthropic
import openai
import pytest
from test_server import direct, http, running, url  # noqa: F401  (direct, url: fixtures)

import r1lite

HI = [{"role": "user", "content": "Hi"}]
GREEDY = {"temperature": 0}  # extra_body: newer anthropic clients dropped the sampling keywords


@pytest.fixture(scope="module")
def client(url):
    return anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def ask(client, budget=4, max_tokens=12, **kw):
    thinking = {"type": "enabled", "budget_tokens": budget} if budget else {"type": "disabled"}
    return client.messages.create(model="tiny", max_tokens=max_tokens, messages=kw.pop("messages", HI),
                                  thinking=thinking, extra_body=GREEDY, **kw)


def blocks(message) -> dict:
    """{block type: its text}; the types in order as the keys."""
    return {b.type: b.thinking if b.type == "thinking" else b.text for b in message.content}


def test_thinking_and_text_blocks_equal_the_python_api(client, direct):
    want = direct.chat(HI, max_new_tokens=12, temperature=0, max_thinking_tokens=4)
    assert want.reasoning and want.answer
    r = ask(client)
    assert list(blocks(r)) == ["thinking", "text"]
    assert blocks(r) == {"thinking": want.reasoning, "text": want.answer}
    assert r.content[0].signature == ""
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant" and r.model == "tiny"
    assert r.stop_reason == "max_tokens" and r.stop_sequence is None
    assert r.usage.input_tokens == want.stats["prompt_tokens"] and r.usage.output_tokens == 12


def test_same_answer_as_the_openai_endpoint(client, url):
    system = "You are terse."
    r = ask(client, system=system, max_tokens=16)
    oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    o = oa.chat.completions.create(model="tiny", max_tokens=16, temperature=0,
                                   messages=[{"role": "system", "content": system}, *HI],
                                   extra_body={"max_thinking_tokens": 4}).choices[0]
    assert blocks(r) == {"thinking": o.message.reasoning_content, "text": o.message.content}


def test_system_prompt(client, direct):
    system = [{"type": "text", "text": "You are "}, {"type": "text", "text": "terse."}]
    want = direct.chat([{"role": "system", "content": "You are terse."}, *HI], max_new_tokens=12,
                       temperature=0, max_thinking_tokens=4)
    r = ask(client, system=system)
    assert blocks(r) == {"thinking": want.reasoning, "text": want.answer}
    assert r.usage.input_tokens == want.stats["prompt_tokens"] > ask(client).usage.input_tokens


def test_stream_equals_unstreamed(client):
    kw = dict(model="tiny", max_tokens=12, messages=HI, extra_body=GREEDY,
              thinking={"type": "enabled", "budget_tokens": 4})
    whole = client.messages.create(**kw)
    kinds = []
    with client.messages.stream(**kw) as stream:
        for event in stream:
            if event.type in ("content_block_start", "content_block_delta", "content_block_stop",
                              "message_start", "message_delta", "message_stop"):
                detail = (event.content_block.type if event.type == "content_block_start" else
                          event.delta.type if event.type == "content_block_delta" else None)
                if not kinds or kinds[-1] != (event.type, detail):
                    kinds.append((event.type, detail))
        final = stream.get_final_message()
    assert kinds == [("message_start", None),
                     ("content_block_start", "thinking"), ("content_block_delta", "thinking_delta"),
                     ("content_block_delta", "signature_delta"), ("content_block_stop", None),
                     ("content_block_start", "text"), ("content_block_delta", "text_delta"),
                     ("content_block_stop", None), ("message_delta", None), ("message_stop", None)]
    assert blocks(final) == blocks(whole) and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 12 and final.usage.input_tokens == whole.usage.input_tokens


def test_stop_sequences(client, direct):
    full = direct.chat(HI, max_new_tokens=12, temperature=0, max_thinking_tokens=4).answer
    stop = full[3:7]
    want = direct.chat(HI, max_new_tokens=12, temperature=0, max_thinking_tokens=4, stop=stop)
    r = ask(client, stop_sequences=["never appears", stop])
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == stop
    assert blocks(r)["text"] == want.answer and stop not in want.answer
    with client.messages.stream(model="tiny", max_tokens=12, messages=HI, extra_body=GREEDY,
                                thinking={"type": "enabled", "budget_tokens": 4},
                                stop_sequences=[stop]) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", stop)
    assert blocks(final) == blocks(r)


def test_thinking_disabled(client, direct):
    want = direct.chat(HI, max_new_tokens=10, temperature=0, max_thinking_tokens=0)
    r = ask(client, budget=0, max_tokens=10)
    assert list(blocks(r)) == ["text"] and blocks(r)["text"] == want.answer
    assert r.usage.output_tokens_details.thinking_tokens == 0
    # the prompt carries an empty think block: more input tokens than when thinking
    assert r.usage.input_tokens == want.stats["prompt_tokens"] > ask(client).usage.input_tokens


@pytest.mark.parametrize("budget", [6, 20])
def test_thinking_budget(client, direct, budget):
    r = ask(client, budget=budget, max_tokens=budget + 10)
    thinking = blocks(r)["thinking"]
    assert 0 < len(direct.tokenizer.encode(thinking, add_special_tokens=False)) <= budget
    assert blocks(r)["text"]  # the answer follows the closed think block
    want = direct.chat(HI, max_new_tokens=budget + 10, temperature=0, max_thinking_tokens=budget)
    assert want.stats["reasoning_closed_by"] == "budget" and thinking == want.reasoning


def test_earlier_thinking_blocks_are_dropped(client):
    def input_tokens(assistant_content):
        r = client.messages.count_tokens(model="tiny", messages=[
            *HI, {"role": "assistant", "content": assistant_content}, {"role": "user", "content": "And?"}])
        return r.input_tokens
    plain = input_tokens("Hello.")
    with_thinking = input_tokens([{"type": "thinking", "thinking": "long thoughts", "signature": ""},
                                  {"type": "text", "text": "Hello."}])
    assert with_thinking == plain < input_tokens("Hello there, friend.")


def test_count_tokens_equals_usage(client):
    r = ask(client, system="Be brief.")
    counted = client.messages.count_tokens(model="tiny", messages=HI, system="Be brief.",
                                           thinking={"type": "enabled", "budget_tokens": 4})
    assert counted.input_tokens == r.usage.input_tokens


def test_api_key(tiny_r1):
    model = r1lite.load(tiny_r1, threads=1, context=256)
    with running(model, api_key="sesame") as (base, _):
        bad = anthropic.Anthropic(base_url=base, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            ask(bad)
        code, reply = http("POST", base + "/v1/messages", dict(model="tiny", max_tokens=2, messages=HI))
        assert code == 401 and reply["type"] == "error"
        assert reply["error"]["type"] == "authentication_error"
        good = anthropic.Anthropic(base_url=base, api_key="sesame", max_retries=0)  # x-api-key
        assert ask(good, budget=0, max_tokens=3).usage.output_tokens == 3
        bearer = anthropic.Anthropic(base_url=base, auth_token="sesame", max_retries=0)
        assert ask(bearer, budget=0, max_tokens=3).usage.output_tokens == 3


@pytest.mark.parametrize("change,status,named", [
    (dict(max_tokens=None), 400, "max_tokens"),
    (dict(max_tokens=0), 400, "max_tokens"),
    (dict(temperature=1.5), 400, "temperature"),
    (dict(top_p="high"), 400, "top_p"),
    (dict(top_k=-1), 400, "top_k"),
    (dict(stop_sequences="END"), 400, "stop_sequences"),
    (dict(thinking={"type": "enabled", "budget_tokens": 8}), 400, "thinking.budget_tokens"),
    (dict(thinking={"type": "enabled"}), 400, "thinking.budget_tokens"),
    (dict(thinking={"type": "sometimes"}), 400, "thinking.type"),
    (dict(messages=[]), 400, "messages"),
    (dict(messages=[{"role": "system", "content": "x"}]), 400, "messages[0].role"),
    (dict(messages=[*HI, {"role": "assistant", "content": "Sure"}]), 400, "messages[1]"),
    (dict(messages=[{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]), 400, "'image'"),
    (dict(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]), 400, "'document'"),
    (dict(messages=[{"role": "user", "content": "word " * 400}]), 400, "messages"),
    (dict(tools=[{"name": "f", "input_schema": {"type": "object"}}]), 400, "tools"),
    (dict(tool_choice={"type": "any"}), 400, "tool_choice"),
    (dict(output_config={"format": {"type": "json_schema", "schema": {}}}), 400, "output_config.format"),
    (dict(temprature=0.5), 400, "temprature"),
    (dict(model=None), 400, "model"),
    (dict(model="claude-opus-4"), 404, "claude-opus-4"),
])
def test_request_errors(url, change, status, named):
    body = {**dict(model="tiny", messages=HI, max_tokens=4), **change}
    body = {k: v for k, v in body.items() if v is not None}
    code, reply = http("POST", url + "/v1/messages", body)
    assert code == status, reply
    assert reply["type"] == "error" and named in reply["error"]["message"]
    assert reply["error"]["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_client_sees_bad_requests(client):
    with pytest.raises(anthropic.BadRequestError, match="'image'"):
        client.messages.create(model="tiny", max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}])
    with pytest.raises(anthropic.BadRequestError, match="tools"):
        client.messages.create(model="tiny", max_tokens=4, messages=HI,
                               tools=[{"name": "f", "input_schema": {"type": "object"}}])
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-opus-4", max_tokens=4, messages=HI)


def test_hints_and_defaults_are_accepted(url):
    """Fields that change no answer, and unimplemented ones sent with values that ask for nothing."""
    body = dict(model="tiny", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]}], max_tokens=2,
        metadata={"user_id": "someone"}, service_tier="auto", tools=[], thinking={"type": "adaptive"},
        output_config={"effort": "low"})
    code, reply = http("POST", url + "/v1/messages", body)
    assert code == 200, reply
    assert reply["usage"]["output_tokens"] == 2


def test_stream_blocks_are_stripped_as_the_unstreamed_ones():
    """Whitespace at either end of a part is dropped as Generation.reasoning / .answer strip it,
    even when it arrives in pieces of its own; inner whitespace stays."""
    import asyncio
    import json
    from types import SimpleNamespace

    from r1lite import anthropic_api
    from r1lite.generate import Piece

    pieces = [Piece("reasoning", "\n "), Piece("reasoning", "a "), Piece("reasoning", " b"),
              Piece("reasoning", " \n"), Piece("answer", "\n\n"), Piece("answer", " x"),
              Piece("answer", " y"), Piece("answer", "  \n")]
    seq = SimpleNamespace(prompt=[1, 2], tokens=[3] * 8, n_reasoning=4, hit_stop_string=False,
                          max_new_tokens=None)
    g = SimpleNamespace(finish_reason="stop", tokens=seq.tokens)

    class Stub:
        model_id = "stub"

        async def _events(self, request, seqs):  # server._events: (choice index, kind, payload)
            for p in pieces:
                yield 0, "pieces", [p]
            yield 0, "done", g

    async def collect():
        return [e async for e in anthropic_api._stream(Stub(), None, seq, "msg_x", hide=False)]

    events = [json.loads(e.split("data: ", 1)[1]) for e in asyncio.run(collect())]
    text = {"thinking_delta": "", "text_delta": ""}
    for e in events:
        if e["type"] == "content_block_delta" and e["delta"]["type"] in text:
            d = e["delta"]
            text[d["type"]] += d.get("thinking", d.get("text"))
    assert text == {"thinking_delta": "a  b", "text_delta": "x y"}
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-1]["type"] == "message_stop"


def test_thinking_display_omitted(client):
    r = client.messages.create(model="tiny", max_tokens=12, messages=HI, extra_body=GREEDY,
                               thinking={"type": "enabled", "budget_tokens": 4, "display": "omitted"})
    assert [(b.type, getattr(b, "thinking", None)) for b in r.content][0] == ("thinking", "")
    assert blocks(r)["text"] == blocks(ask(client))["text"]
