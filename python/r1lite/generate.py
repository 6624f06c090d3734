"""The generation loop: prefill the prompt, then sample, decode, split and stop token by token."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .errors import InvalidArgument
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
            raise InvalidArgument(f"stop must be a non-empty string or a list of them, got {stops!r}",
                                  "stop")
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
        raise InvalidArgument(f"{name} must be an integer >= {low} or None, got {value!r}", name)


class Sequence:
    """One generation's token-by-token logic, apart from the model calls: given the logits of the
    last fed position, choose the next token (sampled, or forced by the thinking budget), decode
    it, cut stop strings, split reasoning from answer. Model.new_sequence makes one; GenerationRun
    drives one through a model, the server's engine many through one batched model."""

    def __init__(self, tokenizer: Tokenizer | None, prompt_ids: list[int], *,
                 sampling: SamplingParams, max_new_tokens: int | None, stop,
                 max_thinking_tokens: int | None, inside_think: bool, eos_ids, context: int):
        check_max_tokens("max_new_tokens", max_new_tokens, allow_zero=False)
        check_max_tokens("max_thinking_tokens", max_thinking_tokens, allow_zero=True)
        self.sampler = Sampler(sampling)
        self.stops = StopStrings(stop)
        if self.stops.stops and tokenizer is None:
            raise InvalidArgument("stop strings need a model with a tokenizer", "stop")
        self.tok, self.prompt, self.context = tokenizer, list(prompt_ids), context
        self.max_new_tokens, self.max_thinking_tokens = max_new_tokens, max_thinking_tokens
        self.eos_ids = set(eos_ids)
        thinks = tokenizer is not None and tokenizer.thinks
        self.splitter = ReasoningSplitter(inside_think=inside_think and thinks, thinks=thinks)
        self.budget_ids = tokenizer.encode(BUDGET_CLOSE) if thinks else []
        self.decoder = StreamDecoder(tokenizer) if tokenizer is not None else None
        self.history, self.tokens, self.forced = list(self.prompt), [], deque()
        self.untold: list[int] = []  # tokens not yet attached to a piece
        self.texts, self.parts = [], {"reasoning": [], "answer": []}
        self.n_reasoning, self.budget_spent = 0, False
        self.finish: str | None = None  # "stop" or "length" once finished
        self.hit_stop_string = False
        self.next_token: int | None = None  # to feed to the model before the next advance()

    def _emit(self, pairs) -> list[Piece]:
        out = []
        for kind, text in pairs:
            self.parts[kind].append(text)
            out.append(Piece(kind, text, self.untold))
            self.untold = []
        return out

    def advance(self, logits) -> list[Piece]:
        """Consume the logits of the last fed position. Afterwards either self.next_token is the
        token to feed, or self.finish is set (then call close())."""
        self.next_token = None
        if self.max_new_tokens is not None and len(self.tokens) >= self.max_new_tokens:
            self.finish = "length"
            return []
        if self.forced:
            token = self.forced.popleft()
        else:
            token = self.sampler(logits, self.history)
            if token in self.eos_ids:
                self.finish = "stop"
                return []
        if self.splitter.thinking:
            self.n_reasoning += 1
        self.tokens.append(token)
        self.history.append(token)
        self.untold.append(token)
        pieces = []
        if self.decoder is not None:
            text, stopped = self.stops.feed(self.decoder.push(token))
            self.texts.append(text)
            pieces = self._emit(self.splitter.feed(text))
            if stopped:
                self.finish, self.hit_stop_string = "stop", True
                return pieces
        if (self.max_thinking_tokens is not None and not self.budget_spent and self.budget_ids
                and self.n_reasoning >= self.max_thinking_tokens and self.splitter.thinking):
            self.forced.extend(self.budget_ids)  # budget forcing: close the think block now
            self.budget_spent = True
        if len(self.prompt) + len(self.tokens) - 1 >= self.context:  # no room to feed it
            self.finish = "length"
            return pieces
        self.next_token = token
        return pieces

    def close(self, stats: dict | None = None) -> list[Piece]:
        """The held-back text as final pieces; sets self.generation."""
        pieces = []
        if self.decoder is not None and not self.hit_stop_string:
            # the decoder's held-back bytes and the text held back as a possible stop string
            text, self.hit_stop_string = self.stops.feed(self.decoder.flush())
            if self.hit_stop_string:
                self.finish = "stop"
            else:
                text += self.stops.finish()
            self.texts.append(text)
            pieces += self._emit(self.splitter.feed(text))
        pieces += self._emit(self.splitter.finish())
        if self.untold:
            pieces.append(Piece("reasoning" if self.splitter.thinking else "answer", "", self.untold))
            self.untold = []
        self.generation = Generation(
            text="".join(self.texts),
            reasoning="".join(self.parts["reasoning"]).strip(),
            answer="".join(self.parts["answer"]).strip(),
            tokens=self.tokens,
            finish_reason=self.finish or "length",
            stats=dict(prompt_tokens=len(self.prompt), generated_tokens=len(self.tokens), **(stats or {})),
        )
        return pieces


class GenerationRun:
    """Iterate to get Pieces; afterwards .generation holds the result."""

    def __init__(self, seq: Sequence, session):
        self.seq = seq
        self.generation: Generation | None = None
        self._session = session  # Model.session: holds the model for the whole run

    def __iter__(self):
        with self._session() as s:
            yield from self._steps(s)

    def _steps(self, s):
        seq = self.seq
        t0 = time.perf_counter()
        s.reset()
        for i in range(0, len(seq.prompt), PREFILL_CHUNK):
            logits = s.forward(seq.prompt[i:i + PREFILL_CHUNK])
        t_prefill = time.perf_counter() - t0

        t1 = time.perf_counter()
        while True:
            yield from seq.advance(logits)
            if seq.next_token is None:
                break
            logits = s.forward([seq.next_token])
        t_decode = time.perf_counter() - t1
        n = len(seq.tokens)
        yield from seq.close(dict(
            prefill_tok_s=len(seq.prompt) / t_prefill if t_prefill > 0 else 0.0,
            decode_tok_s=n / t_decode if t_decode > 0 and n else 0.0))
        self.generation = seq.generation
