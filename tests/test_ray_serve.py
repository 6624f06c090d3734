"""`r1lite serve --ray` and r1lite.serving.ray_app on a real local Ray (2 CPUs) with 2 replicas of
the tiny model, 1 thread each, through Ray Serve's HTTP proxy and the official openai client:
answers equal the single-process ones, streams pass through, Ray reports both replicas running,
and a replica killed mid-request fails its request (never a hang) and is replaced.
The flag checks of `r1lite serve --ray` run without starting Ray."""

import json
import os
import signal
import socket
import sys
import threading
import time
import types
import urllib.request

import openai
import pytest

from r1lite import cli

try:
    from ray import serve as _serve  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="the ray extra is not installed "
                                                   "(pip install 'r1lite[ray,server]')")
LONG = 4000  # tokens of a request that is still running when its replica is killed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_serving(monkeypatch):
    """serve --ray never gets to start Ray in the flag tests (it would serve until stopped)."""
    def refuse(*args, **kw):
        raise AssertionError("Ray would start")
    monkeypatch.setattr("r1lite.serving.serve_on_ray", refuse)


def error_line(argv, capsys) -> str:
    """The one-line error of a `r1lite serve` that must refuse argv (exit status 1)."""
    assert cli.main(["serve", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("r1lite: error: ") and "\n" not in err, err
    return err


# -- flags, checked before Ray starts -------------------------------------------------------------

def test_ray_flags_need_ray(tiny_r1, capsys, no_serving):
    assert "need --ray" in error_line([str(tiny_r1), "--replicas", "2"], capsys)
    assert "need --ray" in error_line([str(tiny_r1), "--ray-address", "auto"], capsys)


def test_without_ray_the_extra_is_named(tiny_r1, capsys, monkeypatch, no_serving):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    assert "pip install 'r1lite[ray,server]'" in error_line([str(tiny_r1), "--ray"], capsys)


@needs_ray
@pytest.mark.parametrize("argv,message", [
    (["--replicas", "0"], "--replicas must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--port", "0"], "--ray needs a fixed --port"),
    (["--replicas", "2", "--threads", "64"], "--replicas 2 x --threads 64 needs 128 CPUs"),
])
def test_bad_flags_are_refused_before_ray_starts(tiny_r1, capsys, argv, message, no_serving):
    import ray

    assert message in error_line([str(tiny_r1), "--ray", *argv], capsys)
    assert not ray.is_initialized()


@needs_ray
def test_missing_model_and_busy_port_are_refused_before_ray_starts(tmp_path, tiny_r1, capsys, no_serving):
    import ray

    assert "no such file or folder" in error_line([str(tmp_path / "none.gguf"), "--ray"], capsys)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "is in use" in error_line([str(tiny_r1), "--ray", "--port", str(port)], capsys)
    assert not ray.is_initialized()


@needs_ray
def test_ray_app_checks_its_options_and_builds_from_config_args(tiny_r1):
    from ray.serve import Application

    from r1lite.serving import build, ray_app

    for bad in (dict(replicas=0), dict(threads=0), dict(max_batch=True), dict(log_level="loud")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ray_app(tiny_r1, **bad)
    assert isinstance(build({"model": str(tiny_r1), "replicas": 2, "threads": 1}), Application)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_health_check_fails_when_the_engine_thread_has_died(tiny_r1):
    import r1lite
    from r1lite.engine import Engine
    from r1lite.serving import Replica

    engine = Engine(r1lite.load(tiny_r1, threads=1, context=64))
    replica = Replica()
    replica.app = types.SimpleNamespace(state=types.SimpleNamespace(
        r1lite_server=types.SimpleNamespace(engine=engine)))
    replica.check_health()  # not started yet: healthy
    engine.start()
    replica.check_health()

    def fail():
        raise MemoryError("no room for a sequence")
    engine._admit = fail  # an error outside a step ends the thread at its next wake-up
    engine.submit(object())
    engine._thread.join(timeout=30)
    with pytest.raises(RuntimeError, match="engine thread has stopped"):
        replica.check_health()


# -- a local Ray with two replicas ----------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tiny_r1):
    """The base URL of ray_app(tiny model, 2 replicas x 1 thread, max_batch 1: Ray sends each
    replica one request at a time) on a local Ray of 2 CPUs, shut down at the end."""
    if not HAVE_RAY:
        pytest.skip("the ray extra is not installed (pip install 'r1lite[ray,server]')")
    import ray
    from ray import serve

    from r1lite.serving import DEPLOYMENT, ray_app

    # the replicas inherit this process's environment (PYTHONPATH included)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 2**20)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(ray_app(str(tiny_r1), replicas=2, threads=1, name="tiny", context=4096,
                          max_batch=1, log_level="warning"), name=DEPLOYMENT, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0, timeout=60)


def replica_states() -> dict:
    from ray import serve

    return serve.status().applications["r1lite"].deployments["r1lite"].replica_states


def replica_pids() -> list:
    """The process ids of the running replicas (Ray names their actors SERVE_REPLICA::...)."""
    import ray

    pids = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::r1lite#"):
            try:
                handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                pids.append(ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
            except (ValueError, ray.exceptions.RayActorError):  # gone since it was listed
                pass
    return pids


def wait_for_two_replicas(timeout: float = 90) -> list:
    """The two replicas' process ids, once Ray reports both running (after a restart, its list
    of named actors may lag its status)."""
    deadline = time.time() + timeout
    while replica_states() != {"RUNNING": 2} or len(pids := set(replica_pids())) != 2:
        assert time.time() < deadline, replica_states()
        time.sleep(0.5)
    return sorted(pids)


def ask(client, i: int, stream: bool, **kw):
    """(reasoning, answer, finish_reason) of chat request i, streamed or not."""
    kw = dict(model="tiny", messages=[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
              temperature=0, **kw)
    if not stream:
        r = client.chat.completions.create(**kw)
        m = r.choices[0].message
        return m.reasoning_content or "", m.content, r.choices[0].finish_reason
    reasoning, answer, finish = "", "", None
    for chunk in client.chat.completions.create(**kw, stream=True):
        for c in chunk.choices:
            reasoning += getattr(c.delta, "reasoning_content", None) or ""
            answer += c.delta.content or ""
            finish = c.finish_reason or finish
    return reasoning, answer, finish


def test_ray_reports_two_running_replicas(served, client):
    import ray

    assert replica_states() == {"RUNNING": 2}
    assert len(set(replica_pids())) == 2
    assert ray.available_resources().get("CPU", 0) == 0  # each replica holds its thread's CPU
    assert [m.id for m in client.models.list()] == ["tiny"]
    body = json.dumps({"model": "tiny", "max_tokens": 6, "messages": [{"role": "user", "content": "Hi"}]})
    req = urllib.request.Request(served + "/v1/messages", data=body.encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:  # the Anthropic API is served too
        assert json.loads(r.read())["usage"]["output_tokens"] == 6


def test_concurrent_answers_equal_the_single_process_ones(client, tiny_r1_model):
    n = 8
    want = []
    for i in range(n):
        g = tiny_r1_model.chat([{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
                               max_new_tokens=24, temperature=0, max_thinking_tokens=8)
        want.append((g.reasoning, g.answer, g.finish_reason))
    got = [None] * n

    def run(i):
        got[i] = ask(client, i, stream=i % 2 == 1, max_tokens=24,
                     extra_body={"max_thinking_tokens": 8})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert got == want
    assert len({w[:2] for w in want}) > 1  # the prompts get different answers


def _kill_one_replica_mid_request(client, stream: bool):
    """Two long requests, one on each replica (each takes one at a time); once both run, one
    replica's process is killed. Returns what each request ended with."""
    running = [threading.Event(), threading.Event()]
    outcome = [None, None]

    def run(i):
        kw = dict(model="tiny", messages=[{"role": "user", "content": f"Long {i}"}], max_tokens=LONG,
                  temperature=0, extra_body={"loop_guard": False})
        try:
            if stream:
                finish = None
                for chunk in client.chat.completions.create(**kw, stream=True):
                    running[i].set()
                    for c in chunk.choices:
                        finish = c.finish_reason or finish
                outcome[i] = ("ok", finish)
            else:
                running[i].set()
                r = client.chat.completions.create(**kw)
                outcome[i] = ("ok", r.choices[0].finish_reason)
        except openai.APIStatusError as e:
            outcome[i] = ("status", e.status_code)
        except openai.APIError as e:  # the connection ended before the stream did
            outcome[i] = ("error", type(e).__name__)
        finally:
            running[i].set()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    for e in running:
        assert e.wait(60)
    time.sleep(0.5 if stream else 1.0)  # both decoding now (a plain request has no first byte)
    pids = wait_for_two_replicas(timeout=10)
    os.kill(pids[0], signal.SIGKILL)
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hangs after its replica died"
    return outcome


def _the_next_request_succeeds(client, tiny_r1_model):
    g = tiny_r1_model.chat([{"role": "user", "content": "Question 0: what is 0 + 0?"}],
                           max_new_tokens=24, temperature=0, max_thinking_tokens=8)
    assert ask(client, 0, stream=True, max_tokens=24,
               extra_body={"max_thinking_tokens": 8}) == (g.reasoning, g.answer, g.finish_reason)
    wait_for_two_replicas()  # Ray replaces the dead replica


def test_a_replica_killed_mid_stream_ends_its_stream_with_an_error(client, tiny_r1_model):
    outcome = _kill_one_replica_mid_request(client, stream=True)
    assert sorted(o[0] for o in outcome) == ["error", "ok"], outcome
    assert ("ok", "length") in outcome
    _the_next_request_succeeds(client, tiny_r1_model)


def test_a_replica_killed_mid_request_answers_a_5xx(client, tiny_r1_model):
    outcome = _kill_one_replica_mid_request(client, stream=False)
    assert ("ok", "length") in outcome, outcome
    failed = [o for o in outcome if o[0] != "ok"]
    assert len(failed) == 1 and failed[0][0] == "status" and failed[0][1] >= 500, outcome
    _the_next_request_succeeds(client, tiny_r1_model)


def test_serve_command_joins_the_cluster_and_ctrl_c_removes_it(served, tiny_r1, tmp_path):
    """`r1lite serve MODEL --ray --ray-address ADDR` redeploys the application on this Ray (its
    proxy stays where Serve started it); Ctrl-C removes the application, the cluster stays."""
    import subprocess

    import ray
    from ray import serve

    log = tmp_path / "serve.log"
    address = ray.get_runtime_context().gcs_address
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "r1lite.cli", "serve", str(tiny_r1), "--ray",
                                 "--ray-address", address, "--replicas", "2", "--threads", "1",
                                 "--max-batch", "1", "--name", "cli-tiny", "--no-webui"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while f"serving cli-tiny on {served}/v1 through Ray" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert "--host/--port are not applied" in log.read_text()  # 8080, while Serve has its own
        client = openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["cli-tiny"]
        r = client.chat.completions.create(model="cli-tiny", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=5, temperature=0)
        assert r.usage.completion_tokens == 5
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "r1lite" not in serve.status().applications
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
