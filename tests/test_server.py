"""`r1lite serve` through the official openai client: answers equal the Python API's, streaming,
reasoning_content, stop strings, seeds, usage, errors, concurrency, disconnects."""

import contextlib
import http.client as http_client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
import uvicorn

import r1lite
from r1lite.engine import Engine, Request
from r1lite.server import Server

HI = [{"role": "user", "content": "Hi"}]


@contextlib.contextmanager
def running(model, model_id="tiny", wrap=None, **kw):
    """A server for `model` on a free localhost port: yields (base URL, the Server). `wrap`, if
    given, wraps the ASGI app (a recorder of requests, say)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = Server(model, model_id, **kw)
    app = srv.app() if wrap is None else wrap(srv.app())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", srv
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def http(method: str, url: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    """(status, JSON body) of a plain HTTP request (for what the openai client hides)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def health(url: str) -> dict:
    return http("GET", url + "/health")[1]


@pytest.fixture(scope="module")
def direct(tiny_r1):
    """A model for the reference answers (the served one belongs to its engine)."""
    return r1lite.load(tiny_r1, threads=2, context=256)


@pytest.fixture(scope="module")
def url(tiny_r1):
    model = r1lite.load(tiny_r1, threads=2, context=256)
    with running(model, max_batch=4) as (base, _):
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_models_and_health(client, url):
    assert [m.id for m in client.models.list()] == ["tiny"]
    h = health(url)
    assert h["status"] == "ok" and h["active"] == 0


def test_chat_equals_the_python_api(client, direct):
    want = direct.chat(HI, max_new_tokens=12, temperature=0, max_thinking_tokens=4)
    assert want.reasoning and want.answer  # the budget closed the think block
    r = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0,
                                       extra_body={"max_thinking_tokens": 4})
    msg = r.choices[0].message
    assert msg.content == want.answer and msg.reasoning_content == want.reasoning
    assert r.choices[0].finish_reason == "length" and r.object == "chat.completion"
    assert r.usage.prompt_tokens == want.stats["prompt_tokens"]
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_stream_equals_unstreamed(client):
    kw = dict(model="tiny", messages=HI, max_tokens=10, temperature=0,
              extra_body={"max_thinking_tokens": 3})
    whole = client.chat.completions.create(**kw).choices[0].message
    content, reasoning, finish, usage = "", "", None, None
    for chunk in client.chat.completions.create(**kw, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            finish = choice.finish_reason or finish
    assert (content, reasoning) == (whole.content, whole.reasoning_content)
    assert finish == "length" and usage.completion_tokens == 10


def test_stop_strings(client, direct):
    full = direct.chat(HI, max_new_tokens=12, temperature=0, max_thinking_tokens=4).answer
    stop = full[3:7]
    want = direct.chat(HI, max_new_tokens=12, temperature=0, max_thinking_tokens=4, stop=stop)
    r = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0,
                                       stop=[stop], extra_body={"max_thinking_tokens": 4})
    assert r.choices[0].finish_reason == "stop" == want.finish_reason
    assert r.choices[0].message.content == want.answer and stop not in want.answer


def test_seed_reproducibility(client, direct):
    def ask(seed):
        return client.chat.completions.create(model="tiny", messages=HI, max_tokens=16,
                                              temperature=2.0, top_p=1.0, seed=seed,
                                              extra_body=dict(top_k=0, min_p=0)).choices[0].message
    a, b, c = ask(7), ask(7), ask(8)
    assert (a.content, a.reasoning_content) == (b.content, b.reasoning_content)
    assert (a.content, a.reasoning_content) != (c.content, c.reasoning_content)
    want = direct.chat(HI, max_new_tokens=16, temperature=2.0, top_p=1.0, top_k=0, min_p=0, seed=7)
    assert (a.reasoning_content or "") == want.reasoning and a.content == want.answer


def test_completions(client, direct):
    want = direct.generate("Hello", max_new_tokens=8, temperature=0)
    r = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, temperature=0)
    assert r.choices[0].text == want.text and r.usage.completion_tokens == 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Hello", max_tokens=8, temperature=0, stream=True))
    assert streamed == want.text


def test_concurrent_clients_get_their_own_answers(client, direct):
    prompts = [f"Question number {i}: what is {i} + {i}?" for i in range(6)]
    want = [direct.chat([{"role": "user", "content": p}], max_new_tokens=20, temperature=2.0,
                        top_p=1.0, seed=i) for i, p in enumerate(prompts)]
    got = [None] * len(prompts)

    def ask(i):
        r = client.chat.completions.create(model="tiny", max_tokens=20, temperature=2.0, top_p=1.0,
                                           seed=i, messages=[{"role": "user", "content": prompts[i]}])
        m = r.choices[0].message
        got[i] = (m.reasoning_content or "", m.content)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, w in enumerate(want):
        assert got[i] == (w.reasoning, w.answer), i
    assert len({w.text for w in want}) > 1


def test_engine_batches_and_matches_single_runs(direct, tiny_r1):
    """Requests waiting together are decoded in one batch; each gets what it gets alone."""
    prompts = [[151646, 9707 + i, 11, 1879 + 3 * i][: 2 + i % 3] for i in range(5)]
    alone = [direct.generate(p, max_new_tokens=12 + i, temperature=0).tokens for i, p in enumerate(prompts)]
    model = r1lite.load(tiny_r1, threads=2, context=256)
    engine = Engine(model, max_batch=4)
    results = {}
    for i, p in enumerate(prompts):
        seq = model.new_sequence(model.text_prompt(p), max_new_tokens=12 + i, temperature=0)
        engine.submit(Request(seq, lambda kind, g, i=i: results.__setitem__(i, g) if kind == "done" else None))
    engine.start()
    deadline = time.time() + 60
    while len(results) < len(prompts):
        assert time.time() < deadline
        time.sleep(0.01)
    engine.stop()
    assert engine.widest_batch == 4  # max_batch; the fifth joined when one left
    for i in range(len(prompts)):
        assert results[i].tokens == alone[i], i
    assert model.logits([1, 2]).shape == (2, model.config["vocab_size"])  # the model is free again


@pytest.mark.parametrize("change,status,param", [
    (dict(temperature=-1), 400, "temperature"),
    (dict(temperature="hot"), 400, "temperature"),
    (dict(top_p=1.5), 400, "top_p"),
    (dict(n=5), 400, "n"),  # more than max_batch (4)
    (dict(n=0), 400, "n"),
    (dict(max_tokens=0), 400, "max_tokens"),
    (dict(max_tokens="many"), 400, "max_tokens"),
    (dict(seed=-3), 400, "seed"),
    (dict(stop=[""]), 400, "stop"),
    (dict(messages=[]), 400, "messages"),
    (dict(messages=[{"role": "robot", "content": "x"}]), 400, "messages[0].role"),
    (dict(messages=[{"role": "user", "content": "word " * 400}]), 400, None),
    (dict(model="other"), 404, "model"),
    (dict(logprobs=3), 400, "logprobs"),
    (dict(logprobs=True, top_logprobs=21), 400, "top_logprobs"),
    (dict(logprobs=True, top_logprobs=-1), 400, "top_logprobs"),
    (dict(top_logprobs=3), 400, "top_logprobs"),  # without logprobs: true
    (dict(presence_penalty=2.5), 400, "presence_penalty"),
    (dict(frequency_penalty=-3), 400, "frequency_penalty"),
    (dict(frequency_penalty="x"), 400, "frequency_penalty"),
    (dict(logit_bias={"151936": 5}), 400, "logit_bias"),  # outside the vocabulary
    (dict(logit_bias={"1": 101}), 400, "logit_bias"),
    (dict(logit_bias={"one": 1}), 400, "logit_bias"),
    (dict(logit_bias=[1]), 400, "logit_bias"),
    (dict(messages=[{"role": "assistant", "content": "x", "reasoning": 3}]), 400, "messages[0].reasoning"),
    # unimplemented OpenAI fields that ask for something, and unknown fields: named, never ignored
    (dict(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "frob"}}}),
     400, "response_format"),
    (dict(functions=[{"name": "f"}]), 400, "functions"),  # the deprecated form of tools
    (dict(echo=True), 400, "echo"),  # completions only
    (dict(temprature=0.5), 400, "temprature"),
])
def test_request_errors(url, change, status, param):
    body = {**dict(model="tiny", messages=HI, max_tokens=2), **change}
    code, reply = http("POST", url + "/v1/chat/completions", body)
    assert code == status
    err = reply["error"]
    assert err["message"] and err["param"] == param
    if "word " in str(change):
        assert err["code"] == "context_length_exceeded"


def test_default_values_of_unimplemented_fields_are_accepted(url):
    """Clients that send OpenAI's defaults explicitly (LangChain and others) are served."""
    body = dict(model="tiny", messages=HI, max_tokens=2, logprobs=False, presence_penalty=0.0,
                frequency_penalty=0, logit_bias={}, response_format={"type": "text"}, tools=[],
                tool_choice="none", user="someone", n=1)
    code, reply = http("POST", url + "/v1/chat/completions", body)
    assert code == 200, reply
    code, reply = http("POST", url + "/v1/completions", dict(model="tiny", prompt="Hi", max_tokens=2, echo=False))
    assert code == 200, reply
    code, reply = http("POST", url + "/v1/completions", dict(model="tiny", prompt="Hi", max_tokens=2, suffix="!"))
    assert code == 400 and reply["error"]["param"] == "suffix"


def test_openai_client_sees_the_errors(client):
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="tiny", messages=HI, temperature=5)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=HI)


def test_unknown_paths_and_bad_json(url):
    code, reply = http("GET", url + "/v1/nothing")
    assert code == 404 and "error" in reply
    code, reply = http("POST", url + "/v1/chat/completions", raw=b"{not json")
    assert code == 400 and "JSON" in reply["error"]["message"]


def test_api_key(tiny_r1):
    model = r1lite.load(tiny_r1, threads=1, context=256)
    with running(model, api_key="sesame") as (base, _):
        bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        assert http("GET", base + "/v1/models")[0] == 401
        good = openai.OpenAI(base_url=base + "/v1", api_key="sesame", max_retries=0)
        r = good.chat.completions.create(model="tiny", messages=HI, max_tokens=3, temperature=0)
        assert r.usage.completion_tokens == 3


def test_disconnect_frees_the_slot(tiny_r1):
    model = r1lite.load(tiny_r1, threads=1, context=4096)
    with running(model) as (url, srv):
        host, port = url.removeprefix("http://").split(":")
        conn = http_client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/chat/completions", headers={"Content-Type": "application/json"},
                     body=json.dumps(dict(model="tiny", messages=HI, stream=True, temperature=0)))
        r = conn.getresponse()
        assert r.status == 200
        data_lines = 0
        while data_lines < 2:  # the role chunk, then a generated piece: the engine is at work
            data_lines += r.readline().startswith(b"data: ")
        assert health(url)["active"] == 1  # would generate until the context (4096) is full
        conn.close()  # the client goes away mid-stream
        deadline = time.time() + 10
        while health(url)["active"] != 0:
            assert time.time() < deadline, "the slot of a client that left was not freed"
            time.sleep(0.02)
        assert srv.engine.steps < 4000  # stopped early, not at the end of the context


def start_serve(model, *flags: str):
    """`r1lite serve MODEL` on a free port (-c 256 -t 1 and flags) as a subprocess, once /health
    answers: (process, url). The caller stops it with SIGINT."""
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "r1lite.cli", "serve", str(model), "--port",
                             str(port), "-c", "256", "-t", "1", *flags],
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if health(url)["status"] == "ok":
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read())
            if time.time() >= deadline:
                proc.kill()
                raise AssertionError("r1lite serve did not come up")
            time.sleep(0.1)


@pytest.mark.parametrize("quiet", [False, True])
def test_serve_command(tiny_r1, quiet):
    """r1lite serve: answers, logs one access line per request (or nothing with --quiet), and
    ends on Ctrl-C with status 0."""
    import re
    import signal

    proc, url = start_serve(tiny_r1, "--name", "tiny-r1", *(["--quiet"] if quiet else []))
    try:
        assert http("GET", url + "/v1/models")[1]["data"][0]["id"] == "tiny-r1"
        code, reply = http("POST", url + "/v1/completions",
                           dict(model="tiny-r1", prompt="Hello", max_tokens=4, temperature=0))
        assert code == 200 and reply["usage"]["completion_tokens"] == 4
        prompt_tokens = reply["usage"]["prompt_tokens"]
        assert http("POST", url + "/v1/completions", dict(model="nope", prompt="Hi"))[0] == 404
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    log = proc.stderr.read()
    lines = [line for line in log.splitlines() if "INFO" in line]
    if quiet:
        assert log == "", log  # no banner, no loading line, no request lines
        return
    assert "serving tiny-r1 on" in log
    completion = [line for line in lines if '"POST /v1/completions"' in line]
    assert len(completion) == 2, log
    assert re.search(rf'127\.0\.0\.1:\d+ "POST /v1/completions" 200 prompt={prompt_tokens} generated=4 '
                     r"\d+\.\d{3}s$", completion[0]), completion[0]
    assert re.search(r'"POST /v1/completions" 404 \d+\.\d{3}s$', completion[1]), completion[1]
    assert any('"GET /v1/models" 200' in line for line in lines)


def test_reasoning_of_earlier_turns_is_dropped(client):
    """The R1 template strips the think block of earlier assistant turns (and the API's separate
    reasoning_content field is not part of the prompt)."""
    def prompt_tokens(assistant):
        r = client.chat.completions.create(model="tiny", max_tokens=1, temperature=0, messages=[
            {"role": "user", "content": "Hi"}, assistant, {"role": "user", "content": "And?"}])
        return r.usage.prompt_tokens
    plain = prompt_tokens({"role": "assistant", "content": "Hello."})
    # the template keeps what follows </think>: here "\n\nHello."
    after_think = prompt_tokens({"role": "assistant", "content": "\n\nHello."})
    assert prompt_tokens({"role": "assistant",
                          "content": "<think>\nlong thoughts here\n</think>\n\nHello."}) == after_think
    assert prompt_tokens({"role": "assistant", "content": "Hello.",
                          "reasoning_content": "more thoughts"}) == plain
    assert prompt_tokens({"role": "assistant", "content": "Hello there, friend."}) > plain
