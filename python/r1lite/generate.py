"""The generation loop: prefill the prompt, then sample, decode, split and stop token by token."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .reasoning import ReasoningSplitter
from .sampling import Sampler, SamplingParams
from .tokenizer import THINK_CLOSE, StreamDecoder, Tokenizer

PREFILL_CHUNK = 256  # prompt tokens per core call: Ctrl-C is answered between chunks
BUDGET_CLOSE = THINK_CLOSE + "\n\n"  # what max_thinking_tokens inserts


@dataclass
class Piece:
    """A streamed piece of output: kind is "reasoning" or "answer"."""
    kind: str
    text: str
    tokens: list = field(default_factory=list)


@dataclass
class Generation:
    text: str            # everything generated (think tags included), up to a stop string
    reasoning: str       # inside <think> ... </think>, stripped
    answer: str          # after </think> (or everything, for a model that does not think)
    tokens: list         # generated token ids (without the final EOS)
    finish_reason: str   # "stop" (EOS or a stop string) or "length" (max_new_tokens or context)
    stats: dict          # prompt_tokens, generated_tokens, prefill_tok_s, decode_tok_s


class StopStrings:
    """Cuts the text at the first user stop string; holds back text that may begin one."""

    def __init__(self, stops):
        if stops is None:
            stops = []
        elif isinstance(stops, str):
            stops = [stops]
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError(f"stop must be a non-empty string or a list of them, got {stops!r}")
        self.stops = list(stops)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was reached)."""
        s = self._pending + text
        hits = [i for i in (s.find(stop) for stop in self.stops) if i >= 0]
        if hits:
            self._pending = ""
            return s[:min(hits)], True
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(s)), keep, -1):
                if stop.startswith(s[-n:]):
                    keep = n
                    break
        self._pending = s[len(s) - keep:]
        return s[:len(s) - keep], False

    def finish(self) -> str:
        rest, self._pending = self._pending, ""
        return rest


def check_max_tokens(name: str, value, allow_zero: bool) -> None:
    if value is None:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low} or None, got {value!r}")


class GenerationRun:
    """Iterate to get Pieces; afterwards .generation holds the result."""

    def __init__(self, core, tokenizer: Tokenizer | None, prompt_ids: list[int], *,
                 sampling: SamplingParams, max_new_tokens: int | None, stop,
                 max_thinking_tokens: int | None, inside_think: bool, eos_ids, exclusive):
        check_max_tokens("max_new_tokens", max_new_tokens, allow_zero=False)
        check_max_tokens("max_thinking_tokens", max_thinking_tokens, allow_zero=True)
        self.sampler = Sampler(sampling)
        self.stops = StopStrings(stop)
        if self.stops.stops and tokenizer is None:
            raise ValueError("stop strings need a model with a tokenizer")
        self.core, self.tok, self.prompt = core, tokenizer, list(prompt_ids)
        self.max_new_tokens, self.max_thinking_tokens = max_new_tokens, max_thinking_tokens
        self.eos_ids = set(eos_ids)
        thinks = tokenizer is not None and tokenizer.thinks
        self.splitter = ReasoningSplitter(inside_think=inside_think and thinks, thinks=thinks)
        self.budget_ids = tokenizer.encode(BUDGET_CLOSE) if thinks else []
        self.generation: Generation | None = None
        self._exclusive = exclusive  # context manager holding the model for the whole run

    def __iter__(self):
        with self._exclusive():
            yield from self._steps()

    def _steps(self):
        core, splitter = self.core, self.splitter
        decoder = StreamDecoder(self.tok) if self.tok is not None else None
        t0 = time.perf_counter()
        core.reset()
        for i in range(0, len(self.prompt), PREFILL_CHUNK):
            logits = core.forward(self.prompt[i:i + PREFILL_CHUNK], False)
        t_prefill = time.perf_counter() - t0

        history, tokens, forced = list(self.prompt), [], deque()
        untold: list[int] = []  # tokens not yet attached to a piece
        texts, parts = [], {"reasoning": [], "answer": []}
        n_reasoning, budget_spent, finish, hit_stop_string = 0, False, None, False

        def emit(pairs):
            nonlocal untold
            for kind, text in pairs:
                parts[kind].append(text)
                yield Piece(kind, text, untold)
                untold = []

        t1 = time.perf_counter()
        while finish is None:
            if self.max_new_tokens is not None and len(tokens) >= self.max_new_tokens:
                finish = "length"
                break
            if forced:
                token = forced.popleft()
            else:
                token = self.sampler(logits, history)
                if token in self.eos_ids:
                    finish = "stop"
                    break
            if splitter.thinking:
                n_reasoning += 1
            tokens.append(token)
            history.append(token)
            untold.append(token)
            if decoder is not None:
                text, stopped = self.stops.feed(decoder.push(token))
                texts.append(text)
                yield from emit(splitter.feed(text))
                if stopped:
                    finish, hit_stop_string = "stop", True
                    break
            if (self.max_thinking_tokens is not None and not budget_spent and self.budget_ids
                    and n_reasoning >= self.max_thinking_tokens and splitter.thinking):
                forced.extend(self.budget_ids)  # budget forcing: close the think block now
                budget_spent = True
            if core.n_past >= core.context:
                finish = "length"
                break
            logits = core.forward([token], False)
        t_decode = time.perf_counter() - t1

        if decoder is not None and not hit_stop_string:
            # the decoder's held-back bytes and the text held back as a possible stop string
            text, hit_stop_string = self.stops.feed(decoder.flush())
            if hit_stop_string:
                finish = "stop"
            else:
                text += self.stops.finish()
            texts.append(text)
            yield from emit(splitter.feed(text))
        yield from emit(splitter.finish())
        if untold:
            yield Piece("reasoning" if splitter.thinking else "answer", "", untold)
        self.generation = Generation(
            text="".join(texts),
            reasoning="".join(parts["reasoning"]).strip(),
            answer="".join(parts["answer"]).strip(),
            tokens=tokens,
            finish_reason=finish,
            stats=dict(prompt_tokens=len(self.prompt), generated_tokens=len(tokens),
                       prefill_tok_s=len(self.prompt) / t_prefill if t_prefill > 0 else 0.0,
                       decode_tok_s=len(tokens) / t_decode if t_decode > 0 and tokens else 0.0),
        )
