"""The generation loop: prefill the prompt, then sample, decode, split and stop token by token."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidArgument
from .logprobs import check_top, following_logprobs, token_logprob
from .reasoning import ReasoningSplitter
from .sampling import Sampler, SamplingParams, dry_breaker_ids
from .tokenizer import THINK_CLOSE, StreamDecoder, Tokenizer

PREFILL_CHUNK = 256  # prompt tokens per core call: Ctrl-C is answered between chunks
BUDGET_CLOSE = THINK_CLOSE + "\n\n"  # what max_thinking_tokens inserts
# The soft landing of the thinking budget and of the loop guard: this sentence, then </think>,
# so that the answer is written from what was thought (the wording Qwen documents for its
# thinking budget).
THINK_LANDING = ("\n\nConsidering the limited time by the user, I have to give the solution "
                 "based on the thinking directly now.\n")
THINKING_MARGIN = 64  # default: tokens before the landing point where a paragraph or sentence end lands
# reasoning_effort -> max_thinking_tokens (Python, CLI and server alike)
EFFORT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}

# The loop guard: the output's last LOOP_MIN_TOKENS or more tokens are one span of 1 to
# LOOP_MAX_SPAN tokens repeated back to back at least LOOP_MIN_REPEATS times (a span of up to 21
# tokens must repeat until the run covers 64 tokens; a longer span, 3 times).
LOOP_MIN_REPEATS = 3
LOOP_MIN_TOKENS = 64
LOOP_MAX_SPAN = 512


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
    finish_reason: str   # "stop" (EOS or a stop string), "length" (max_new_tokens or context),
                         # or "repetition" (the loop guard stopped a verbatim loop in the answer)
    stats: dict          # prompt_tokens, generated_tokens, prefill_tok_s, decode_tok_s,
                         # reasoning_closed_by ("budget", "loop_guard" or None: the model itself)
    logprobs: list | None = None         # with logprobs=k: a logprobs.TokenLogprob per token
    prompt_logprobs: list | None = None  # with prompt_logprobs: one per prompt token, None first


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
        self.matched: str | None = None  # the stop string reached (the earliest in the text)

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, whether a stop string was reached)."""
        s = self._pending + text
        hits = [(i, stop) for stop in self.stops if (i := s.find(stop)) >= 0]
        if hits:
            self._pending = ""
            at, self.matched = min(hits, key=lambda h: h[0])
            return s[:at], True
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


class LoopGuard:
    """Watches tokens for a verbatim loop: the last n >= LOOP_MIN_TOKENS tokens being one span of
    p <= LOOP_MAX_SPAN tokens repeated back to back, n >= LOOP_MIN_REPEATS * p. For each period p
    it keeps how many trailing tokens equal the token p places before them (O(LOOP_MAX_SPAN) per
    token, vectorized)."""

    def __init__(self, min_repeats: int = LOOP_MIN_REPEATS, min_tokens: int = LOOP_MIN_TOKENS,
                 max_span: int = LOOP_MAX_SPAN):
        self.min_repeats, self.min_tokens, self.max_span = min_repeats, min_tokens, max_span
        self.periods = np.arange(1, max_span + 1)
        self.needed = np.maximum(min_repeats * self.periods, min_tokens)
        self.reset()

    def reset(self) -> None:
        self.tokens: list[int] = []
        self.runs = np.zeros(self.max_span, dtype=np.int64)

    def push(self, token: int) -> int:
        """Add a token; the span length of the loop the tokens now end in, or 0."""
        prev = self.tokens[-self.max_span:][::-1]  # prev[p - 1] is the token p places back
        self.tokens.append(token)
        if len(self.tokens) > 4 * self.max_span:
            del self.tokens[:-self.max_span]
        eq = np.zeros(self.max_span, dtype=bool)
        eq[:len(prev)] = np.asarray(prev, dtype=np.int64) == token
        self.runs = np.where(eq, self.runs + 1, 0)
        hit = np.flatnonzero(self.runs + self.periods >= self.needed)
        return int(hit[0]) + 1 if hit.size else 0


def thinking_budget(max_thinking_tokens, reasoning_effort):
    """The reasoning budget: max_thinking_tokens when given, else reasoning_effort's
    (EFFORT_BUDGETS: low 1024, medium 4096, high 16384), else None (no budget)."""
    if reasoning_effort is not None and reasoning_effort not in EFFORT_BUDGETS:
        raise InvalidArgument(f"reasoning_effort must be one of {', '.join(EFFORT_BUDGETS)}, got "
                              f"{reasoning_effort!r}", "reasoning_effort")
    if max_thinking_tokens is not None or reasoning_effort is None:
        return max_thinking_tokens
    return EFFORT_BUDGETS[reasoning_effort]


def check_max_tokens(name: str, value, allow_zero: bool) -> None:
    if value is None:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidArgument(f"{name} must be an integer >= {low} or None, got {value!r}", name)


def check_limits(max_new_tokens, max_thinking_tokens, thinking_margin, loop_guard,
                 allow_zero_new: bool = False) -> None:
    check_max_tokens("max_new_tokens", max_new_tokens, allow_zero=allow_zero_new)
    check_max_tokens("max_thinking_tokens", max_thinking_tokens, allow_zero=True)
    check_max_tokens("thinking_margin", thinking_margin, allow_zero=True)
    if not isinstance(loop_guard, bool):
        raise InvalidArgument(f"loop_guard must be True or False, got {loop_guard!r}", "loop_guard")


def check_generation_kwargs(*, max_new_tokens=None, stop=None, max_thinking_tokens=None,
                            reasoning_effort=None, thinking_margin=None, loop_guard=True,
                            seed=None, **sampling) -> None:
    """InvalidArgument naming a bad generation keyword, without a model (the CLI checks its flags
    before loading one); unset sampling values are the model's defaults, valid by construction."""
    SamplingParams(**{k: v for k, v in sampling.items() if v is not None}, seed=seed).check()
    thinking_budget(max_thinking_tokens, reasoning_effort)
    check_limits(max_new_tokens, max_thinking_tokens, thinking_margin, loop_guard)
    StopStrings(stop)


class Sequence:
    """One generation's token-by-token logic, apart from the model calls: given the logits of the
    last fed position, choose the next token (sampled, or forced by the thinking budget), decode
    it, cut stop strings, split reasoning from answer. Model.new_sequence makes one; GenerationRun
    drives one through a model, the server's engine many through one batched model.

    Thinking budget (max_thinking_tokens): the think block is closed within that many reasoning
    tokens. When the budget leaves room for it, the close is soft: THINK_LANDING then "</think>"
    are inserted at the first paragraph or sentence end among the last thinking_margin tokens
    before the landing must start (at the latest so that the sentence ends at the budget);
    a budget too small for the sentence closes with "</think>" alone, right at the budget.

    Loop guard (loop_guard=True, the default): a verbatim loop (LoopGuard) inside the reasoning
    closes the think block with the landing, so the model answers; in the answer it stops the
    generation with finish_reason "repetition" (not under a constraint: the grammar bounds it).

    Constraint (a constrain.Constraint): the answer's tokens are sampled among those its grammar
    allows, and fed back to it; the reasoning of a model that thinks is free, the constraint
    starts at the token after </think> (at the first token when there is no think block)."""

    def __init__(self, tokenizer: Tokenizer | None, prompt_ids: list[int], *,
                 sampling: SamplingParams, max_new_tokens: int | None, stop,
                 max_thinking_tokens: int | None, inside_think: bool, eos_ids, context: int,
                 loop_guard: bool = True, thinking_margin: int = THINKING_MARGIN,
                 logprobs: int | None = None, prompt_logprobs: bool = False, constraint=None):
        check_top(logprobs)
        if not isinstance(prompt_logprobs, bool) or (prompt_logprobs and logprobs is None):
            raise InvalidArgument("prompt_logprobs must be True or False, and True needs logprobs=k",
                                  "prompt_logprobs")
        # scoring a prompt alone (max_new_tokens=0) is allowed with prompt_logprobs
        check_limits(max_new_tokens, max_thinking_tokens, thinking_margin, loop_guard,
                     allow_zero_new=prompt_logprobs)
        if thinking_margin is None:
            thinking_margin = THINKING_MARGIN
        sampling.check()
        breakers = (dry_breaker_ids(tokenizer, sampling.dry_sequence_breakers)
                    if sampling.dry else frozenset())
        self.sampler = Sampler(sampling, breakers, context)
        self.stops = StopStrings(stop)
        if self.stops.stops and tokenizer is None:
            raise InvalidArgument("stop strings need a model with a tokenizer", "stop")
        self.tok, self.prompt, self.context = tokenizer, list(prompt_ids), context
        self.max_new_tokens, self.max_thinking_tokens = max_new_tokens, max_thinking_tokens
        self.eos_ids = set(eos_ids)
        thinks = tokenizer is not None and tokenizer.thinks
        self.splitter = ReasoningSplitter(inside_think=inside_think and thinks, thinks=thinks)
        self.budget_ids = tokenizer.encode(BUDGET_CLOSE) if thinks else []
        self.landing_ids = tokenizer.encode(THINK_LANDING + BUDGET_CLOSE) if thinks else []
        self.thinking_margin = thinking_margin
        self.guard = LoopGuard() if loop_guard else None
        self.closed_by: str | None = None  # "budget" or "loop_guard" when r1lite closed the reasoning
        self.decoder = StreamDecoder(tokenizer) if tokenizer is not None else None
        self.history, self.tokens, self.forced = list(self.prompt), [], deque()
        self.untold: list[int] = []  # tokens not yet attached to a piece
        self.texts, self.parts = [], {"reasoning": [], "answer": []}
        self.n_reasoning, self.budget_spent = 0, False
        self.finish: str | None = None  # "stop", "length" or "repetition" once finished
        self.hit_stop_string = False
        self.next_token: int | None = None  # to feed to the model before the next advance()
        self.top = logprobs  # alternatives per token; None: no logprobs
        self.logprobs = [] if logprobs is not None else None
        self.prompt_logprobs = [None] if prompt_logprobs else None  # the first token has none
        self.constraint = constraint

    def score(self, rows: np.ndarray, start: int) -> None:
        """Record prompt logprobs from the logits rows of prompt positions start, start + 1, ...
        (each predicts the prompt's next token; the last position's predicts none)."""
        following = self.prompt[start + 1:start + 1 + len(rows)]
        self.prompt_logprobs += following_logprobs(rows[:len(following)], following, self.top)

    def _emit(self, pairs) -> list[Piece]:
        out = []
        for kind, text in pairs:
            self.parts[kind].append(text)
            out.append(Piece(kind, text, self.untold))
            self.untold = []
        return out

    def advance(self, logits, pick=None) -> list[Piece]:
        """Consume the logits of the last fed position. Afterwards either self.next_token is the
        token to feed, or self.finish is set (then call close()). pick(logits, history, generated),
        when given, chooses the token in place of the sampler (speculative sampling's rule)."""
        self.next_token = None
        if self.max_new_tokens is not None and len(self.tokens) >= self.max_new_tokens:
            self.finish = "length"
            return []
        forced = bool(self.forced)
        constrained = self.constraint is not None and not self.splitter.thinking
        if forced:
            token = self.forced.popleft()
        else:
            allowed = self.constraint.mask(logits) if constrained else logits
            token = (self.sampler if pick is None else pick)(allowed, self.history, self.tokens)
            if token in self.eos_ids:
                self.finish = "stop"
                return []
        if self.logprobs is not None:  # forced tokens too: their probability under the model
            self.logprobs.append(token_logprob(logits, token, self.top))
        if constrained:
            self.constraint.consume(token)
        was_thinking = self.splitter.thinking
        if was_thinking:
            self.n_reasoning += 1
        self.tokens.append(token)
        self.history.append(token)
        self.untold.append(token)
        pieces, text = [], ""
        if self.decoder is not None:
            text, stopped = self.stops.feed(self.decoder.push(token))
            self.texts.append(text)
            pieces = self._emit(self.splitter.feed(text))
            if stopped:
                self.finish, self.hit_stop_string = "stop", True
                return pieces
        if self.guard is not None:
            if was_thinking and not self.splitter.thinking:
                self.guard.reset()  # the answer starts: loops are looked for in it alone
            looping = self.guard.push(token) and not forced and not self.forced
            if looping and self.splitter.thinking and self.landing_ids:
                self.forced.extend(self.landing_ids)  # close the looping reasoning, then answer
                self.budget_spent, self.closed_by = True, "loop_guard"
                self.guard.reset()
            elif looping and not constrained:
                self.finish = "repetition"
                return pieces
        if not self.budget_spent and self.splitter.thinking and self._budget_closes(text, forced):
            self.budget_spent, self.closed_by = True, "budget"
        if len(self.prompt) + len(self.tokens) - 1 >= self.context:  # no room to feed it
            self.finish = "length"
            return pieces
        self.next_token = token
        return pieces

    def _budget_closes(self, text: str, forced: bool) -> bool:
        """Queue the close of the think block if the budget says so now (see the class doc)."""
        budget = self.max_thinking_tokens
        if budget is None or not self.budget_ids or forced:
            return False
        # reasoning tokens before the sentence starts, so that "</think>" comes right at the budget
        land_at = budget - (len(self.landing_ids) - len(self.budget_ids))
        if land_at < 1:  # no room for the sentence: close at the budget
            if self.n_reasoning >= budget:
                self.forced.extend(self.budget_ids)
                return True
            return False
        natural = text.endswith("\n") or text.rstrip(" ").endswith((".", "!", "?"))
        if self.n_reasoning >= land_at or (natural and self.n_reasoning >= land_at - self.thinking_margin):
            self.forced.extend(self.landing_ids)
            return True
        return False

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
            stats=dict(prompt_tokens=len(self.prompt), generated_tokens=len(self.tokens),
                       reasoning_closed_by=self.closed_by, **(stats or {})),
            logprobs=self.logprobs, prompt_logprobs=self.prompt_logprobs,
        )
        return pieces


class GenerationRun:
    """Iterate to get Pieces; afterwards .generation holds the result."""

    def __init__(self, seq: Sequence, session, speculation=None):
        self.seq = seq
        self.generation: Generation | None = None
        self._session = session  # Model.session: holds the model for the whole run
        self._speculation = speculation  # speculative.Speculation, or None: token by token

    def __iter__(self):
        with self._session() as s:
            yield from self._steps(s)

    def _steps(self, s):
        seq = self.seq
        t0 = time.perf_counter()
        s.reset()
        scoring = seq.prompt_logprobs is not None
        for i in range(0, len(seq.prompt), PREFILL_CHUNK):
            logits = s.forward(seq.prompt[i:i + PREFILL_CHUNK], scoring)
            if self._speculation is not None:
                self._speculation.prefilled(s, seq.prompt[i:i + PREFILL_CHUNK])
            if scoring:
                seq.score(logits, i)
                logits = logits[-1]
        t_prefill = time.perf_counter() - t0

        t1 = time.perf_counter()
        spec_stats = {}
        if self._speculation is not None:
            spec_stats = yield from self._speculation.decode(seq, s, logits)
        else:
            while True:
                yield from seq.advance(logits)
                if seq.next_token is None:
                    break
                logits = s.forward([seq.next_token])
        t_decode = time.perf_counter() - t1
        n = len(seq.tokens)
        yield from seq.close(dict(
            prefill_tok_s=len(seq.prompt) / t_prefill if t_prefill > 0 else 0.0,
            decode_tok_s=n / t_decode if t_decode > 0 and n else 0.0, **spec_stats))
        self.generation = seq.generation
