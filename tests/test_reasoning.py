"""The reasoning / answer split on scripted streams, cut at every possible place."""

import pytest

from r1lite.reasoning import ReasoningSplitter


def split(chunks, inside_think, thinks=True):
    s = ReasoningSplitter(inside_think=inside_think, thinks=thinks)
    out = []
    for c in chunks:
        out += s.feed(c)
    out += s.finish()
    reasoning = "".join(t for k, t in out if k == "reasoning")
    answer = "".join(t for k, t in out if k == "answer")
    return reasoning.strip(), answer.strip()


def every_split(text):
    """The text as one chunk, as single characters, and cut in two at every position."""
    yield [text]
    yield list(text)
    for i in range(1, len(text)):
        yield [text[:i], text[i:]]


@pytest.mark.parametrize("text,inside,want", [
    ("<think>\nLet me add 2 and 2.\n</think>\n\nThe answer is 4.", False,
     ("Let me add 2 and 2.", "The answer is 4.")),
    ("Let me add 2 and 2.\n</think>\n\nThe answer is 4.", True,
     ("Let me add 2 and 2.", "The answer is 4.")),
    ("\n\n<think>\n\n</think>\n\n4", False, ("", "4")),
    ("<think>\nstill thinking when the tokens ran out", False,
     ("still thinking when the tokens ran out", "")),
    ("still thinking, opened by the template </thi", True,
     ("still thinking, opened by the template </thi", "")),
    ("No thinking here, <think> later is answer text", False,
     ("", "No thinking here, <think> later is answer text")),
    ("<thinking> is not the tag", False, ("", "<thinking> is not the tag")),
    ("a < b </think> c", True, ("a < b", "c")),
])
def test_split(text, inside, want):
    for chunks in every_split(text):
        assert split(chunks, inside) == want, chunks


def test_model_without_thinking_is_all_answer():
    assert split(["<think>x</think>y"], inside_think=False, thinks=False) == ("", "<think>x</think>y")


def test_close_tag_as_one_token_streams_reasoning_before_it():
    s = ReasoningSplitter(inside_think=True)
    assert s.feed("step one") == [("reasoning", "step one")]
    assert s.thinking
    assert s.feed("</think>") == []
    assert not s.thinking
    assert s.feed("\n\nDone") == [("answer", "Done")]
