"""GET /metrics: after requests through the openai and anthropic clients, the Prometheus counters
equal the requests sent and the tokens the answers report; timings and gauges are there; the
server runs without prometheus_client."""

import http.client as http_client
import json
import sys
import time
import urllib.request

import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_server import HI, health, http, running

import r1lite


def scrape(url: str) -> dict:
    """{(sample name, sorted labels): value} of GET /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_equal_what_was_sent_and_returned(tiny_r1):
    model = r1lite.load(tiny_r1, threads=2, context=256)
    with running(model, max_batch=4) as (url, _):
        oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        an = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
        usages = []  # (prompt tokens, generated tokens) of each answer
        for n in (5, 9):
            u = oa.chat.completions.create(model="tiny", messages=HI, max_tokens=n).usage
            usages.append((u.prompt_tokens, u.completion_tokens))
        chunks = oa.chat.completions.create(model="tiny", messages=HI, max_tokens=7, stream=True,
                                            stream_options={"include_usage": True})
        u = [c.usage for c in chunks if c.usage][0]
        usages.append((u.prompt_tokens, u.completion_tokens))
        u = oa.completions.create(model="tiny", prompt="Hello there", max_tokens=4).usage
        usages.append((u.prompt_tokens, u.completion_tokens))
        u = an.messages.create(model="tiny", max_tokens=6, messages=HI, system="Be brief.").usage
        usages.append((u.input_tokens, u.output_tokens))
        with an.messages.stream(model="tiny", max_tokens=8, messages=HI) as stream:
            u = stream.get_final_message().usage
        usages.append((u.input_tokens, u.output_tokens))
        with pytest.raises(openai.BadRequestError):
            oa.chat.completions.create(model="tiny", messages=HI, temperature=5)
        assert http("GET", url + "/v1/nowhere")[0] == 404

        m = scrape(url)
        req = "r1lite_requests_total"
        assert value(m, req, endpoint="/v1/chat/completions", status="200") == 3
        assert value(m, req, endpoint="/v1/chat/completions", status="400") == 1
        assert value(m, req, endpoint="/v1/completions", status="200") == 1
        assert value(m, req, endpoint="/v1/messages", status="200") == 2
        assert value(m, req, endpoint="other", status="404") == 1
        assert value(m, req, endpoint="/metrics", status="200") == 0  # this scrape ends after it
        # prompt tokens are computed, or reused from an earlier request's cache (the same HI prompt)
        reused = value(m, "r1lite_prefix_cache_reused_tokens_total")
        assert value(m, "r1lite_prompt_tokens_total") + reused == sum(p for p, _ in usages)
        assert reused > 0 and value(m, "r1lite_prefix_cache_lookups_total") == len(usages)
        assert value(m, "r1lite_generated_tokens_total") == sum(g for _, g in usages)
        assert value(m, "r1lite_time_to_first_token_seconds_count") == len(usages)
        assert value(m, "r1lite_inter_token_latency_seconds_count") == sum(g - 1 for _, g in usages)
        assert value(m, "r1lite_time_to_first_token_seconds_sum") > 0
        assert value(m, "r1lite_request_duration_seconds_count", endpoint="/v1/messages") == 2
        assert value(m, "r1lite_sequences_running") == 0 == value(m, "r1lite_sequences_waiting")
        assert value(scrape(url), req, endpoint="/metrics", status="200") == 1


def test_running_gauge_follows_the_engine(tiny_r1):
    model = r1lite.load(tiny_r1, threads=1, context=4096)
    with running(model) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        conn = http_client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/messages", headers={"Content-Type": "application/json"},
                     body=json.dumps(dict(model="tiny", messages=HI, max_tokens=4000, stream=True)))
        r = conn.getresponse()
        while not r.readline().startswith(b"event: content_block_delta"):
            pass  # generating
        assert value(scrape(url), "r1lite_sequences_running") == 1
        conn.close()  # the client leaves; its tokens so far are still counted
        deadline = time.time() + 10
        while health(url)["active"]:
            assert time.time() < deadline
            time.sleep(0.02)
        m = scrape(url)
        assert value(m, "r1lite_sequences_running") == 0
        assert 0 < value(m, "r1lite_generated_tokens_total") < 4000


def test_without_prometheus_client(tiny_r1, monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    model = r1lite.load(tiny_r1, threads=1, context=256)
    with running(model) as (url, _):
        code, reply = http("GET", url + "/metrics")
        assert code == 501 and "prometheus_client" in reply["error"]["message"]
        code, reply = http("POST", url + "/v1/chat/completions",
                           dict(model="tiny", messages=HI, max_tokens=3))
        assert code == 200 and reply["usage"]["completion_tokens"] == 3
