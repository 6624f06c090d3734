"""Structured output and tools through the Python API and the official openai client:
response_format (json_schema, json_object) holds on a random-weight model whatever it samples
and on the demo model (SmolLM2); R1's reasoning stays free, the constraint starts after
</think>; tool calls (named, "required", "auto") parse and their arguments validate, streamed
too; tool results render through the template; bad schemas and tool choices get 400s."""

import json

import jsonschema
import openai
import pytest

import r1lite
from r1lite import constrain, tools
from test_server import HI, http, running

pytest.importorskip("llguidance")

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 12},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "tags": {"type": "array", "items": {"enum": ["red", "green"]}, "maxItems": 3}}}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "maxLength": 20},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a timezone",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["zone"],
                   "properties": {"zone": {"type": "string", "maxLength": 10}}}}}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, CLOCK)}
BUDGET = dict(max_thinking_tokens=24)  # R1's reasoning, kept short


def valid(text, schema):
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


# -- the Python API ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(temperature=0), dict(temperature=1.0, seed=3, top_p=1.0),
                                dict(temperature=1.5, seed=9, top_k=0, top_p=1.0)])
def test_json_schema_holds_on_random_weights(tiny_r1_model, kw):
    g = tiny_r1_model.chat(HI, response_format=PERSON_FORMAT, max_new_tokens=400, **BUDGET, **kw)
    assert g.finish_reason == "stop"
    valid(g.answer, PERSON)


def test_constraint_from_the_start_when_thinking_is_skipped(tiny_r1_model):
    g = tiny_r1_model.chat(HI, response_format=PERSON_FORMAT, max_new_tokens=200,
                           max_thinking_tokens=0, temperature=1.0, seed=1)
    assert g.reasoning == "" and g.text.lstrip(" \t\n").startswith("{")  # the very first token
    valid(g.answer, PERSON)


def test_reasoning_is_free_then_the_answer_is_json(tiny_r1_model):
    """Greedy reasoning is the same token for token with and without the constraint; only the
    tokens after </think> differ (the unconstrained random model writes no JSON)."""
    free = tiny_r1_model.chat(HI, max_new_tokens=60, temperature=0, **BUDGET)
    json_mode = tiny_r1_model.chat(HI, max_new_tokens=400, temperature=0,
                                   response_format=PERSON_FORMAT, **BUDGET)
    close = tiny_r1_model.tokenizer.think_close_id
    end = free.tokens.index(close) + 1
    assert json_mode.tokens[:end] == free.tokens[:end] and json_mode.reasoning == free.reasoning
    valid(json_mode.answer, PERSON)
    with pytest.raises(ValueError):
        json.loads(free.answer)


def test_grammar_keyword_and_bad_formats(tiny_r1_model):
    g = tiny_r1_model.generate("Say yes or no:", response_format=constrain.lark('start: "yes" | "no"'),
                               max_new_tokens=10, temperature=1.0, seed=0)
    assert g.text in ("yes", "no") and g.finish_reason == "stop"
    for bad in ({"type": "json_schema", "json_schema": {"schema": {"type": "frob"}}},
                {"type": "xml"}, {"type": "grammar", "grammar": "start: ("}):
        with pytest.raises(ValueError, match="response_format") as e:
            tiny_r1_model.generate("x", response_format=bad, max_new_tokens=2)
        assert e.value.param == "response_format"


# -- the server ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tiny_r1):
    model = r1lite.load(tiny_r1, threads=2, context=2048)
    with running(model, max_batch=4) as (base, _):
        yield base


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0)


def ask(client, **kw):
    kw = {"model": "tiny", "messages": HI, "max_tokens": 400, "extra_body": BUDGET, **kw}
    return client.chat.completions.create(**kw)


@pytest.mark.parametrize("kw", [dict(temperature=0), dict(temperature=1.0, seed=5),
                                dict(temperature=1.0, seed=6, n=2)])
def test_server_json_schema(client, kw):
    r = ask(client, response_format=PERSON_FORMAT, **kw)
    for choice in r.choices:
        assert choice.finish_reason == "stop"
        valid(choice.message.content, PERSON)
        assert choice.message.reasoning_content  # R1 reasoned freely first


def test_server_json_schema_streamed_and_completions(client):
    parts, reasoning = [], []
    for chunk in ask(client, response_format=PERSON_FORMAT, temperature=1.0, seed=2, stream=True):
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            reasoning.append(getattr(c.delta, "reasoning_content", None) or "")
    valid("".join(parts), PERSON)
    assert "".join(reasoning)
    r = client.completions.create(model="tiny", prompt="JSON:", max_tokens=200, temperature=1.0,
                                  seed=1, extra_body={"response_format": PERSON_FORMAT})
    valid(r.choices[0].text, PERSON)


def test_server_json_object_on_random_weights(client):
    """Any object: the random model's strings run on (it loops) until max_tokens, but what it
    writes is the start of an object, key first."""
    r = ask(client, response_format={"type": "json_object"}, temperature=1.0, seed=0, max_tokens=60)
    assert r.choices[0].message.content.startswith('{"')


def check_call(call, name=None):
    assert call.type == "function" and call.id.startswith("call_")
    assert name is None or call.function.name == name
    valid(call.function.arguments, SCHEMAS[call.function.name])


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_named_tool_call(client, temperature):
    r = ask(client, tools=[WEATHER, CLOCK], temperature=temperature, seed=4,
            tool_choice={"type": "function", "function": {"name": "get_time"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert len(choice.message.tool_calls) == 1
    check_call(choice.message.tool_calls[0], "get_time")


def test_named_tool_call_streamed(client):
    calls, content, finish = {}, [], None
    for chunk in ask(client, tools=[WEATHER, CLOCK], temperature=1.0, seed=8, stream=True,
                     tool_choice={"type": "function", "function": {"name": "get_weather"}}):
        for c in chunk.choices:
            content.append(c.delta.content or "")
            for d in c.delta.tool_calls or []:
                calls.setdefault(d.index, d)
            finish = c.finish_reason or finish
    assert finish == "tool_calls" and "".join(content) == "" and list(calls) == [0]
    check_call(calls[0], "get_weather")


def test_required_tool_call_with_two_tools(client):
    names = set()
    for seed in range(3):
        r = ask(client, tools=[WEATHER, CLOCK], tool_choice="required", temperature=1.0, seed=seed)
        call, = r.choices[0].message.tool_calls
        check_call(call)
        names.add(call.function.name)
    assert names <= {"get_weather", "get_time"}


def test_auto_and_none_answer_in_text(client):
    """The random model does not write DeepSeek's call markers: "auto" gives a plain answer."""
    for choice in ("auto", "none"):
        r = ask(client, tools=[WEATHER], tool_choice=choice, temperature=0, max_tokens=40)
        assert r.choices[0].finish_reason in ("stop", "length") and not r.choices[0].message.tool_calls


def test_tool_result_turn_renders(client, tiny_r1_model):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"}]
    shown, extra = tools.render(messages, tiny_r1_model.tokenizer, tools.check([WEATHER], "auto"))
    text = tiny_r1_model.tokenizer.apply_chat_template(shown, **extra)
    assert "get_weather\n```json\n" + call["function"]["arguments"] in text  # R1's own markup
    assert "<｜tool▁output▁begin｜>21 degrees, sunny<｜tool▁output▁end｜>" in text
    assert '"name": "get_weather"' in text  # the fallback's tool list (R1's template has none)
    r = ask(client, messages=messages, tools=[WEATHER], temperature=0, max_tokens=5)
    bare = ask(client, messages=messages[:1], temperature=0, max_tokens=5)
    assert r.usage.prompt_tokens > bare.usage.prompt_tokens + 20


BAD = [
    (dict(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "frob"}}}),
     "response_format"),
    (dict(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object",
                                                                             "properties": 5}}}),
     "response_format"),
    (dict(response_format={"type": "yaml"}), "response_format"),
    (dict(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
    (dict(tools=[WEATHER], tool_choice="sometimes"), "tool_choice"),
    (dict(tool_choice="required"), "tool_choice"),  # without tools
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                                "properties": 5}}}]),
     "tools[0].function.parameters"),
    (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
     "tools[0].function.parameters"),
    (dict(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools[0].function.name"),
    (dict(tools=[{"type": "retrieval"}]), "tools[0]"),
    (dict(tools=[WEATHER], tool_choice="required", response_format={"type": "json_object"}),
     "response_format"),
    (dict(messages=[{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]}]),
     "messages[0].tool_calls[0]"),
]


@pytest.mark.parametrize("change,param", BAD)
def test_bad_requests_name_the_field(served, change, param):
    body = {"model": "tiny", "messages": HI, "max_tokens": 2, **change}
    code, reply = http("POST", served + "/v1/chat/completions", body)
    assert code == 400 and reply["error"]["param"] == param, reply


def test_openai_client_sees_a_bad_schema(client):
    with pytest.raises(openai.BadRequestError, match="response_format"):
        ask(client, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frob"}}})


# -- parsing calls, and holding back streamed text that may begin one ----------------------------

def test_parse_both_styles():
    for style in ("deepseek", "hermes"):
        text = "Let me check. " + tools.call_text(style, "get_time", '{"zone": "UTC"}')
        content, calls = tools.parse(text, style)
        assert content == "Let me check." and len(calls) == 1
        assert calls[0]["function"] == {"name": "get_time", "arguments": '{"zone": "UTC"}'}
        assert tools.parse("no call here", style) == ("no call here", [])


def test_streamed_text_is_held_back_at_a_possible_call():
    from r1lite.server import _ChoiceTools

    c = _ChoiceTools("hermes", constrained=False)
    assert c.content("Sure <tool") == "Sure " and c.content("_call>{") == "" and c.calling
    c = _ChoiceTools("hermes", constrained=False)
    assert c.content("a <to") == "a " and c.content("day") == "<today" and c.rest() == ""


# -- the demo model (SmolLM2-135M-Instruct, real weights, no reasoning) ---------------------------

@pytest.fixture(scope="module")
def demo():
    from r1lite.resolve import demo_model_path

    return r1lite.load(demo_model_path(), context=2048)


def test_demo_model_json_schema_and_tools(demo):
    schema = {"type": "object", "additionalProperties": False, "required": ["city", "country"],
              "properties": {"city": {"type": "string", "maxLength": 40},
                             "country": {"type": "string", "maxLength": 40}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    question = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
    with running(demo, model_id="demo", max_batch=2) as (base, _):
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        greedy = client.chat.completions.create(model="demo", messages=question, response_format=fmt,
                                                temperature=0, max_tokens=60)
        assert "paris" in valid(greedy.choices[0].message.content, schema)["city"].lower()
        sampled = client.chat.completions.create(model="demo", messages=question, response_format=fmt,
                                                 temperature=1.0, seed=3, max_tokens=60, n=2)
        for choice in sampled.choices:
            valid(choice.message.content, schema)
        anything = client.chat.completions.create(model="demo", messages=question, temperature=0,
                                                  response_format={"type": "json_object"}, max_tokens=100)
        assert isinstance(json.loads(anything.choices[0].message.content), dict)
        r = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=80)
        call, = r.choices[0].message.tool_calls
        check_call(call, "get_weather")
