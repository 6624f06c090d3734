"""The real R1-Distill-Qwen tokenizer and chat template (tests/assets)."""


import pytest

from r1lite.tokenizer import StreamDecoder, Tokenizer
from tiny_model import assets_dir

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_folder(assets_dir())


def test_special_token_ids(tok):
    assert tok.bos_id == 151646 and tok.bos_token == BOS
    assert tok.eos_ids == [151643]
    assert tok.token_id("<｜User｜>") == 151644 and tok.token_id("<｜Assistant｜>") == 151645
    assert (tok.think_open_id, tok.think_close_id) == (151648, 151649) and tok.thinks
    assert tok.encode("</think>") == [151649]


def test_one_turn(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == BOS + "<｜User｜>Hi<｜Assistant｜>"  # ARCH.md §9, January template
    ids = tok.encode(text)
    assert ids[0] == 151646 and ids.count(151646) == 1 and ids[-1] == 151645


def test_multi_turn_strips_earlier_reasoning(tok):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nA1"},
                {"role": "user", "content": "Q2"}]
    assert tok.apply_chat_template(messages) == (
        BOS + "Be brief.<｜User｜>Q1<｜Assistant｜>\n\nA1" + EOS + "<｜User｜>Q2<｜Assistant｜>")


def test_raw_prompt_gets_one_bos(tok):
    assert tok.encode("Hello", add_special_tokens=True)[0] == 151646
    ids = tok.encode(BOS + "Hello", add_special_tokens=True)
    assert ids.count(151646) == 1


def test_unknown_role_is_refused(tok):
    with pytest.raises(ValueError, match="role"):
        tok.apply_chat_template([{"role": "wizard", "content": "x"}])
    with pytest.raises(ValueError, match="content"):
        tok.apply_chat_template([{"role": "user"}])
    with pytest.raises(ValueError, match="non-empty list"):
        tok.apply_chat_template([])


def test_streaming_never_splits_a_character(tok):
    text = "Größe 🤖 数学题 — naïve café 👩‍👩‍👧 end"
    ids = tok.encode(text)
    assert len(ids) > 10
    d = StreamDecoder(tok)
    pieces = [d.push(i) for i in ids] + [d.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # some emoji span several tokens: the decoder really had to hold bytes back
    assert any(p == "" for p in pieces[:-1])


def test_generation_defaults(tok):
    assert tok.generation_config["temperature"] == 0.6 and tok.generation_config["top_p"] == 0.95


def test_matches_transformers_tokenizer(tok):
    transformers = pytest.importorskip("transformers")
    ref = transformers.AutoTokenizer.from_pretrained(str(assets_dir()))
    messages = [{"role": "user", "content": "What is 2+2? Größe 🤖"},
                {"role": "assistant", "content": "<think>x</think>\n\n4"},
                {"role": "user", "content": "And 3+3?"}]
    want = ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(messages) == want
    assert tok.encode(want) == ref(want, add_special_tokens=False)["input_ids"]
    assert tok.encode("plain text", add_special_tokens=True) == ref("plain text")["input_ids"]
