"""The r1lite command as a person uses it: run, info, errors, and the chat REPL under a terminal."""

import subprocess
import sys

import pexpect
import pytest

CLI = [sys.executable, "-m", "r1lite"]


def run_cli(*args, timeout=120):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def test_run_streams_the_answer_to_stdout(tiny_r1):
    r = run_cli("run", str(tiny_r1), "Hi", "-n", "8", "--temp", "0", "--verbose", "-c", "256")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<think>\n")  # reasoning marked when stdout is not a terminal
    assert "loading" in r.stderr and "generated at" in r.stderr
    hidden = run_cli("run", str(tiny_r1), "Hi", "-n", "8", "--temp", "0", "--hide-think")
    assert hidden.returncode == 0 and hidden.stdout.strip() == ""  # 8 tokens, all reasoning


def test_run_raw_equals_the_python_api(tiny_r1):
    import r1lite

    want = r1lite.load(tiny_r1, context=256).generate("Once", max_new_tokens=6, temperature=0)
    r = run_cli("run", str(tiny_r1), "Once", "--raw", "-n", "6", "--temp", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == want.text + "\n"


def test_info(tiny_r1):
    r = run_cli("info", str(tiny_r1))
    assert r.returncode == 0, r.stderr
    assert "qwen2" in r.stdout and "f32" in r.stdout and "reasoning (<think>): yes" in r.stdout


@pytest.mark.parametrize("args,match", [
    (["run", "/no/such/model", "hi"], "/no/such/model"),
    (["run", "{model}", "hi", "--temp", "-1"], "temperature"),
    (["run", "{model}", "hi", "-t", "0"], "threads"),
])
def test_user_mistakes_give_one_line_errors(tiny_r1, args, match):
    r = run_cli(*[a.format(model=tiny_r1) for a in args])
    assert r.returncode == 1
    assert match in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("r1lite: error:")


def test_chat_repl_under_a_terminal(tiny_r1):
    child = pexpect.spawn(sys.executable, ["-m", "r1lite", "chat", str(tiny_r1), "-n", "6",
                                           "--temp", "0", "-c", "512"],
                          encoding="utf-8", timeout=60, dimensions=(40, 200))
    child.expect(">>> ")
    child.sendline("What is 2+2?")
    child.expect("\x1b\\[2m")     # the reasoning starts, dimmed
    child.expect(">>> ")          # the answer ended, prompt again
    reply = child.before
    assert reply.strip()
    child.sendline("/help")
    child.expect("/clear")
    child.expect(">>> ")
    child.sendline("/clear")
    child.expect("cleared")
    child.expect(">>> ")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_ctrl_c_stops_the_answer_not_the_program(tiny_r1):
    child = pexpect.spawn(sys.executable, ["-m", "r1lite", "chat", str(tiny_r1), "-c", "100000",
                                           "--temp", "1"],
                          encoding="utf-8", timeout=60, dimensions=(40, 200))
    child.expect(">>> ")
    child.sendline("Tell me a long story")
    child.expect("\x1b\\[2m")
    child.sendintr()
    child.expect("stopped")
    child.expect(">>> ")
    child.sendeof()  # Ctrl-D leaves
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_convert_then_run(tiny_r1, tmp_path):
    out = tmp_path / "tiny-q8.safetensors"
    r = run_cli("convert", str(tiny_r1), str(out), "--quant", "q8_0")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "wrote" in r.stderr
    info = run_cli("info", str(out))
    assert "q8_0" in info.stdout
    r = run_cli("run", str(out), "Hi", "-n", "3", "--temp", "0")
    assert r.returncode == 0 and r.stdout.strip()
    bad = run_cli("convert", str(tmp_path / "nope"), str(tmp_path / "o"))
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_bench_command(qwen2_dir):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "r1lite.cli", "bench", str(qwen2_dir), "--prefill", "20",
                          "--decode", "5", "-t", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1].startswith("prefill 20 tokens:") and lines[2].startswith("decode 5 tokens:")
    assert "% of the measured read bandwidth" in lines[2] and "MB of weights" in lines[0]
    bad = subprocess.run([sys.executable, "-m", "r1lite.cli", "bench", str(qwen2_dir), "--decode", "0"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "--decode must be >= 1" in bad.stderr
