"""A newcomer's first hour with the r1lite command: every mistake is one line naming what to do,
flags are checked before a model loads, and the model store (pull / list / rm) against a local
fake hub (huggingface_hub's offline cache layout, no network)."""

import os
import socket
import subprocess
import sys

import pytest

from tiny_model import fake_hub_cache

CLI = [sys.executable, "-m", "r1lite"]


def run_cli(*args, env=None, timeout=180):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(r, match: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r1lite: error:"), r.stderr
    assert match in lines[0], lines[0]


@pytest.mark.parametrize("args,match", [
    (["run", "{m}", "hi", "-n", "-5"], "-n/--max-tokens must be >= 1 (or -1: no limit), got -5"),
    (["run", "{m}", "hi", "-n", "0"], "-n/--max-tokens must be >= 1"),
    (["run", "{m}", "hi", "--top-p", "2"], "top_p must be in (0, 1]"),
    (["run", "{m}", "hi", "--max-think", "-3"], "max_thinking_tokens"),
    (["chat", "{m}", "-c", "0"], "-c/--context must be >= 1"),
    (["info", "{m}", "-t", "-2"], "-t/--threads must be >= 1"),
    (["bench", "{m}", "--decode", "0"], "--decode must be >= 1"),
    (["serve", "{m}", "--max-batch", "0"], "--max-batch must be >= 1"),
    (["run", "{m}", "hi", "--kv-cache", "q8_0", "--device", "cuda:0"], "kv_cache"),
    (["run", "{m}", "hi", "--spec", "ngram", "--spec-k", "0"], "--spec-k must be >= 1"),
    (["chat", "{m}", "--spec", "magic"], "--spec must be ngram"),
    (["run", "{m}", "hi", "--spec-n", "2"], "--spec-k and --spec-n need --spec ngram"),
])
def test_bad_flags_fail_before_loading(tiny_r1, args, match):
    r = run_cli(*[a.format(m=tiny_r1) for a in args])
    one_line_error(r, match)  # one line: no "loading ..." first, the model was never read


def test_a_missing_gpu_is_one_line_before_loading(tiny_r1):
    import r1lite._core as core

    if not core.cuda_unavailable_reason():
        pytest.skip("a CUDA device is present")
    one_line_error(run_cli("run", tiny_r1, "hi", "--device", "cuda"), "device='cuda' is not available")


def test_a_text_file_named_gguf_is_named_as_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("<html>404 Not Found</html>")
    r = run_cli("info", fake)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "not a GGUF file" in r.stderr.strip().splitlines()[-1]


def test_an_unknown_hub_id_offline_says_why(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "R1LITE_HOME": str(tmp_path / "home")}
    r = run_cli("run", "no-such/model", "hi", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("r1lite: error:") and "'no-such/model'" in last and "HF_HUB_OFFLINE=1" in last


def test_a_port_in_use_is_named_before_loading(tiny_r1):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        r = run_cli("serve", tiny_r1, "--port", port)
    finally:
        taken.close()
    one_line_error(r, f"port {port} on 127.0.0.1 is in use")


def test_context_beyond_training_warns(tiny_r1):
    r = run_cli("run", tiny_r1, "hi", "-c", "8192", "-n", "2", "--temp", "0")
    assert r.returncode == 0, r.stderr
    assert "warning: -c 8192 is beyond the 4096 tokens the model was trained for" in r.stderr


def test_version_and_help_text():
    import r1lite
    from r1lite.cli import MODEL_HELP, _parser

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"r1lite {r1lite.__version__}"
    ap = _parser()
    commands = next(a for a in ap._actions if a.dest == "command").choices
    assert {"run", "chat", "info", "bench", "serve", "convert", "pull", "list", "rm"} <= set(commands)
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"r1lite {name}: {action.option_strings or action.dest} has no help text"
            if action.dest == "model":
                assert action.help == MODEL_HELP  # every form a model argument takes


# -- the model store -------------------------------------------------------------------------

@pytest.fixture
def hub_env(tiny_r1, tmp_path):
    """An offline hub holding the tiny R1 model as deepseek-ai/Tiny-R1, an empty store."""
    fake_hub_cache(tmp_path / "hub", "deepseek-ai/Tiny-R1", tiny_r1)
    return {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
            "R1LITE_HOME": str(tmp_path / "home"), "R1LITE_HUB_QUANT": ""}


def test_pull_list_run_rm(tiny_r1, hub_env, tmp_path):
    import r1lite

    r = run_cli("list", env=hub_env)
    assert r.returncode == 0 and r.stdout == "" and "no models" in r.stderr
    for quant in ("f32", "q8_0"):
        r = run_cli("pull", "deepseek-ai/Tiny-R1", "--quant", quant, env=hub_env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"deepseek-ai/Tiny-R1:{quant}")
    assert (tmp_path / "home" / "models" / "deepseek-ai--Tiny-R1" / "f32.safetensors").is_file()
    rows = run_cli("list", env=hub_env).stdout.splitlines()
    assert rows[0].split() == ["NAME", "ARCHITECTURE", "FORMAT", "SIZE", "CONTEXT"]
    assert [row.split()[:3] for row in rows[1:]] == [["deepseek-ai/Tiny-R1:f32", "qwen2", "f32"],
                                                     ["deepseek-ai/Tiny-R1:q8_0", "qwen2", "q8_0"]]
    assert all(row.split()[-1] == "4096" for row in rows[1:])

    # store names work as model paths: full, without the owner, without the quant (the default, q8_0)
    want = r1lite.load(tiny_r1, context=256, kv_cache="f32").generate("Once", max_new_tokens=5, temperature=0)
    for name in ("deepseek-ai/Tiny-R1:f32", "Tiny-R1:f32"):
        r = run_cli("run", name, "Once", "--raw", "-n", "5", "--temp", "0", "-c", "256", "--kv-cache", "f32", env=hub_env)
        assert r.returncode == 0, r.stderr
        assert r.stdout == want.text + "\n"
    r = run_cli("info", "deepseek-ai/Tiny-R1", env=hub_env)
    assert r.returncode == 0 and "q8_0" in r.stdout  # the default quant of the two

    r = run_cli("rm", "deepseek-ai/Tiny-R1:f32", env=hub_env)
    assert r.returncode == 0 and "removed deepseek-ai/Tiny-R1:f32" in r.stdout
    assert [row.split()[0] for row in run_cli("list", env=hub_env).stdout.splitlines()[1:]] == ["deepseek-ai/Tiny-R1:q8_0"]
    one_line_error(run_cli("rm", "deepseek-ai/Tiny-R1:f32", env=hub_env), "no model 'deepseek-ai/Tiny-R1:f32' in the store")


def test_a_hub_id_loads_through_the_store(tiny_r1, hub_env, tmp_path):
    """r1lite run with a hub id not yet pulled: converted once into the store (default q8_0)."""
    r = run_cli("run", "deepseek-ai/Tiny-R1", "Once", "--raw", "-n", "3", "--temp", "0", env=hub_env)
    assert r.returncode == 0, r.stderr
    assert "converting deepseek-ai/Tiny-R1 to q8_0 once" in r.stderr
    assert (tmp_path / "home" / "models" / "deepseek-ai--Tiny-R1" / "q8_0.safetensors").is_file()
    again = run_cli("run", "deepseek-ai/Tiny-R1", "Once", "--raw", "-n", "3", "--temp", "0", env=hub_env)
    assert again.returncode == 0 and "converting" not in again.stderr and again.stdout == r.stdout


def test_pull_errors_are_one_line(hub_env):
    one_line_error(run_cli("pull", "deepseek-ai/Not-There", env=hub_env), "HF_HUB_OFFLINE=1")
    one_line_error(run_cli("pull", "not-a-hub-id", env=hub_env), "not a Hugging Face hub id")
