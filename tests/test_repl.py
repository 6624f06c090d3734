"""`r1lite chat` as ollama users drive it, under a terminal: /set (think, budget, sampling values,
ollama's /set parameter, system, verbose), /show, /save and /load, multi-line input; --think /
--no-think on run; the demo's first run, with no flags, ends on its own."""

import json
import subprocess
import sys
import time

import pexpect

CLI = [sys.executable, "-m", "r1lite"]
DIM = "\x1b[2m"


def spawn(model, *flags):
    child = pexpect.spawn(sys.executable, ["-m", "r1lite", "chat", str(model), "-c", "1024", *flags],
                          encoding="utf-8", timeout=90, dimensions=(40, 200))
    child.expect(">>> ")
    return child


def say(child, line):
    """Send a line; what was printed up to the next prompt."""
    child.sendline(line)
    child.expect(">>> ")
    return child.before


def test_set_and_show(tiny_r1):
    child = spawn(tiny_r1, "-n", "6", "--temp", "0")
    assert "/set think on|off" in say(child, "/help") and "/save FILE" in child.before
    out = say(child, "/set temperature 0.3")
    assert "set temperature" in out
    say(child, "/set parameter top_k 5")
    say(child, "/set repeat_penalty 1.1")
    say(child, "/set think budget 3")
    say(child, "/set dry_multiplier 0.8")
    say(child, "/set loop_guard off")
    params = say(child, "/show parameters")
    for want in ("temperature          0.3", "top_k                5", "repetition_penalty   1.1",
                 "think budget         3", "dry_multiplier       0.8", "loop_guard           off",
                 "num_predict          6"):
        assert want in params, (want, params)
    assert "0.95 (model default)" in params  # top_p from the R1 generation config
    assert "error" in say(child, "/set temperature -1") and "temperature" in child.before
    assert "error" in say(child, "/set parameter dry_base 0.2") and "dry_base" in child.before
    assert "error" in say(child, "/set top_k lots")
    assert "unknown setting" in say(child, "/set colour blue")
    assert "temperature          0.3" in say(child, "/show parameters")  # unchanged by the errors
    info = say(child, "/show info")
    assert "architecture" in info and "qwen2" in info and "cache per token" in info
    assert "weight formats" in info and "context" in info
    say(child, "/set system Answer briefly.")
    assert "Answer briefly." in say(child, "/show system")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_think_controls_and_verbose(tiny_r1):
    child = spawn(tiny_r1, "-n", "6", "--temp", "0")
    assert DIM in say(child, "Hi")  # reasoning, dimmed
    say(child, "/set think off")
    out = say(child, "Hi")
    assert DIM not in out and out.strip()  # an answer without reasoning
    say(child, "/set think on")
    say(child, "/set think hide")
    out = say(child, "Hi")
    assert DIM not in out
    say(child, "/set think show")
    say(child, "/set verbose")
    out = say(child, "Hi")
    assert DIM in out and "prompt tokens at" in out and "generated at" in out
    say(child, "/set quiet")
    assert "generated at" not in say(child, "Hi")
    child.sendline("/bye")
    child.expect(pexpect.EOF)

    child = spawn(tiny_r1, "-n", "6", "--temp", "0", "--no-think")
    assert DIM not in say(child, "Hi")
    assert "think                off" in say(child, "/show parameters")
    child.sendline("/bye")
    child.expect(pexpect.EOF)


def test_multiline_save_and_load(tiny_r1, tmp_path):
    child = spawn(tiny_r1, "-n", "4", "--temp", "0")
    child.sendline('"""')
    child.expect(r"\.\.\. ")
    child.sendline("first line")
    child.expect(r"\.\.\. ")
    child.sendline('second line"""')
    child.expect(">>> ")
    saved = tmp_path / "talk.json"
    assert "saved 2 messages" in say(child, f"/save {saved}")
    data = json.loads(saved.read_text())
    assert data["messages"][0] == {"role": "user", "content": "first line\nsecond line"}
    assert data["messages"][1]["role"] == "assistant"
    say(child, '"""one line too"""')
    say(child, "/clear")
    assert "saved 0 messages" in say(child, f"/save {tmp_path / 'empty.json'}")
    assert "loaded 2 messages" in say(child, f"/load {saved}")
    assert "saved 2 messages" in say(child, f"/save {tmp_path / 'again.json'}")
    assert json.loads((tmp_path / "again.json").read_text())["messages"] == data["messages"]
    assert "error" in say(child, f"/load {tmp_path / 'nope.json'}")
    assert "usage: /save FILE" in say(child, "/save")
    (tmp_path / "bad.json").write_text('{"messages": [{"role": "robot"}]}')
    assert "not a saved conversation" in say(child, f"/load {tmp_path / 'bad.json'}")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def run_cli(*args, timeout=120):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def test_run_think_flags(tiny_r1):
    think = run_cli("run", str(tiny_r1), "Hi", "-n", "8", "--temp", "0", "--think")
    assert think.returncode == 0 and think.stdout.startswith("<think>\n")
    no = run_cli("run", str(tiny_r1), "Hi", "-n", "8", "--temp", "0", "--no-think")
    assert no.returncode == 0 and "<think>" not in no.stdout and no.stdout.strip()
    both = run_cli("run", str(tiny_r1), "Hi", "--think", "--no-think")
    assert both.returncode == 2
    bad = run_cli("run", str(tiny_r1), "Hi", "--dry-base", "0.5")
    assert bad.returncode == 1 and "dry_base" in bad.stderr
    assert "default 2048" in run_cli("run", "--help").stdout


def test_default_run_of_a_thinking_model_answers(tiny_r1):
    """No -n: 2048 tokens at most, the reasoning closed by 1536, so an answer always comes."""
    r = run_cli("run", str(tiny_r1), "Hi", "--seed", "1", "--verbose", "-c", "4096", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "</think>" in r.stdout and r.stdout.split("</think>")[1].strip()
    generated = int(r.stderr.split(" generated at")[0].split()[-1])
    assert generated <= 2048


def test_the_demo_ends_on_its_own():
    """A newcomer's first command, without --temp 0 or -n: it must end by itself."""
    t0 = time.time()
    r = run_cli("run", "demo", "What is the capital of France? Answer in one sentence.", "--verbose", timeout=900)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    generated = int(r.stderr.split(" generated at")[0].split()[-1])
    assert generated <= 2048, r.stderr
    print(f"demo: {generated} tokens in {time.time() - t0:.0f} s")
