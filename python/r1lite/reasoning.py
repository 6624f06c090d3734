"""Splitting R1's output into reasoning (inside <think> ... </think>) and answer, while it streams.

The output may open with <think> itself, or the prompt may already end inside the think block
(the revised R1 template appends "<think>\\n"; then only </think> appears). Text that might be the
start of a tag is held back until it is decided. Whitespace right after a tag is dropped, so
neither part starts with the newlines the model writes after the tags."""

from __future__ import annotations

from .tokenizer import THINK_CLOSE, THINK_OPEN

START, REASONING_START, REASONING, ANSWER_START, ANSWER = range(5)


def _held_back(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class ReasoningSplitter:
    def __init__(self, inside_think: bool, thinks: bool = True):
        """inside_think: the prompt ends inside a think block. thinks: the model can think at all
        (False: everything is answer)."""
        self.state = REASONING_START if inside_think else (START if thinks else ANSWER)
        self._pending = ""

    @property
    def thinking(self) -> bool:
        """Inside a think block (the next token is a reasoning token)."""
        return self.state in (REASONING_START, REASONING)

    def feed(self, text: str) -> list[tuple[str, str]]:
        """(kind, text) pieces decided by this text; kind is "reasoning" or "answer"."""
        self._pending += text
        out: list[tuple[str, str]] = []
        while self._pending:
            s = self._pending
            if self.state == START:
                stripped = s.lstrip()
                if not stripped or (THINK_OPEN.startswith(stripped) and stripped != THINK_OPEN):
                    break  # undecided yet
                if stripped.startswith(THINK_OPEN):
                    self._pending, self.state = stripped[len(THINK_OPEN):], REASONING_START
                else:
                    self.state = ANSWER
            elif self.state in (REASONING_START, ANSWER_START):
                self._pending = s.lstrip()
                if not self._pending:
                    break
                self.state = REASONING if self.state == REASONING_START else ANSWER
            elif self.state == REASONING:
                end = s.find(THINK_CLOSE)
                if end >= 0:
                    out.append(("reasoning", s[:end]))
                    self._pending, self.state = s[end + len(THINK_CLOSE):], ANSWER_START
                else:
                    keep = _held_back(s, THINK_CLOSE)
                    out.append(("reasoning", s[:len(s) - keep]))
                    self._pending = s[len(s) - keep:]
                    break
            else:  # ANSWER
                out.append(("answer", s))
                self._pending = ""
        return [(k, t) for k, t in out if t]

    def finish(self) -> list[tuple[str, str]]:
        """Whatever is held back, as the part it is in (an unclosed think block is reasoning)."""
        rest, self._pending = self._pending, ""
        if not rest.strip():
            return []
        return [("reasoning" if self.thinking else "answer", rest)]
