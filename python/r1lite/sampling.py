"""Choosing the next token from logits: greedy, or temperature / top-k / top-p / min-p sampling
with a repetition penalty, in the order transformers applies them; before them OpenAI's
presence / frequency penalties and logit_bias, and the DRY penalty ("don't repeat yourself", as
llama.cpp and text-generation-webui define it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgument

# Without a generation_config.json: llama.cpp's defaults.
FALLBACK_DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repetition_penalty=1.0)
# R1 family (DeepSeek's advice, the distills' generation_config.json): used for a model that
# thinks (R1's <think> tokens) wherever its generation config is missing or silent (GGUF files).
R1_DEFAULTS = dict(temperature=0.6, top_k=0, top_p=0.95, min_p=0.0, repetition_penalty=1.0)
# transformers' defaults for what a generation_config.json leaves out
HF_DEFAULTS = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0)

# DRY defaults (llama.cpp's and text-generation-webui's)
DRY_BASE = 1.75
DRY_ALLOWED_LENGTH = 2
DRY_PENALTY_LAST_N = -1  # -1: the whole context; 0: DRY off; N: the last N tokens
DRY_SEQUENCE_BREAKERS = ("\n", ":", "\"", "*")
DRY_MAX_MATCH = 50  # matches are followed back at most this far (text-generation-webui's cap)
PENALTY_RANGE = 2.0     # presence_penalty / frequency_penalty in [-2, 2] (OpenAI's range)
LOGIT_BIAS_RANGE = 100  # logit_bias values in [-100, 100] (OpenAI's range)


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 0             # 0: off
    top_p: float = 1.0         # 1: off
    min_p: float = 0.0         # 0: off
    repetition_penalty: float = 1.0
    seed: int | None = None
    dry_multiplier: float = 0.0      # 0: DRY off
    dry_base: float = DRY_BASE
    dry_allowed_length: int = DRY_ALLOWED_LENGTH
    dry_penalty_last_n: int = DRY_PENALTY_LAST_N
    dry_sequence_breakers: tuple = DRY_SEQUENCE_BREAKERS
    presence_penalty: float = 0.0    # OpenAI's: subtracted once from each generated token's logit
    frequency_penalty: float = 0.0   # OpenAI's: subtracted per occurrence in the generated tokens
    logit_bias: dict | None = None   # {token id: bias}, added to the logits

    def check(self, vocab_size: int | None = None) -> "SamplingParams":
        """Raise InvalidArgument naming a nonsense value; logit_bias keys become ints (and are
        checked against vocab_size when given)."""
        def number(name, value):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidArgument(f"{name} must be a finite number, got {value!r}", name)
        number("temperature", self.temperature)
        if self.temperature < 0:
            raise InvalidArgument(f"temperature must be >= 0 (0 is greedy), got {self.temperature}",
                                  "temperature")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidArgument(f"top_k must be an integer >= 0 (0 turns it off), got {self.top_k!r}",
                                  "top_k")
        number("top_p", self.top_p)
        if not 0 < self.top_p <= 1:
            raise InvalidArgument(f"top_p must be in (0, 1], got {self.top_p}", "top_p")
        number("min_p", self.min_p)
        if not 0 <= self.min_p < 1:
            raise InvalidArgument(f"min_p must be in [0, 1), got {self.min_p}", "min_p")
        number("repetition_penalty", self.repetition_penalty)
        if self.repetition_penalty <= 0:
            raise InvalidArgument(f"repetition_penalty must be > 0, got {self.repetition_penalty}",
                                  "repetition_penalty")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or self.seed < 0):
            raise InvalidArgument(f"seed must be a non-negative integer, got {self.seed!r}", "seed")
        number("dry_multiplier", self.dry_multiplier)
        if self.dry_multiplier < 0:
            raise InvalidArgument(f"dry_multiplier must be >= 0 (0 turns DRY off), got "
                                  f"{self.dry_multiplier}", "dry_multiplier")
        number("dry_base", self.dry_base)
        if self.dry_base < 1:
            raise InvalidArgument(f"dry_base must be >= 1, got {self.dry_base}", "dry_base")
        if (isinstance(self.dry_allowed_length, bool) or not isinstance(self.dry_allowed_length, int)
                or self.dry_allowed_length < 1):
            raise InvalidArgument(f"dry_allowed_length must be an integer >= 1, got "
                                  f"{self.dry_allowed_length!r}", "dry_allowed_length")
        if (isinstance(self.dry_penalty_last_n, bool) or not isinstance(self.dry_penalty_last_n, int)
                or self.dry_penalty_last_n < -1):
            raise InvalidArgument(f"dry_penalty_last_n must be an integer >= -1 (-1: the whole "
                                  f"context, 0: off), got {self.dry_penalty_last_n!r}",
                                  "dry_penalty_last_n")
        breakers = self.dry_sequence_breakers
        if isinstance(breakers, str) or not isinstance(breakers, (list, tuple)) or not all(
                isinstance(b, str) and b for b in breakers):
            raise InvalidArgument(f"dry_sequence_breakers must be a list of non-empty strings, got "
                                  f"{breakers!r}", "dry_sequence_breakers")
        self.dry_sequence_breakers = tuple(breakers)
        for name in ("presence_penalty", "frequency_penalty"):
            number(name, getattr(self, name))
            if abs(getattr(self, name)) > PENALTY_RANGE:
                raise InvalidArgument(f"{name} must be in [-2, 2], got {getattr(self, name)}", name)
        self.logit_bias = _checked_bias(self.logit_bias, vocab_size)
        return self

    @property
    def dry(self) -> bool:
        """Whether the DRY penalty applies."""
        return self.dry_multiplier > 0 and self.dry_penalty_last_n != 0


def _checked_bias(bias, vocab_size: int | None) -> dict | None:
    """logit_bias as {int id: float}; token ids may be given as strings (JSON object keys)."""
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise InvalidArgument(f"logit_bias must map token ids to numbers, got {bias!r}", "logit_bias")
    out = {}
    for key, value in bias.items():
        token = key
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():
            token = int(key)
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise InvalidArgument(f"logit_bias keys must be token ids, got {key!r}", "logit_bias")
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            raise InvalidArgument(f"logit_bias: token id {token} is outside the vocabulary "
                                  f"[0, {vocab_size})", "logit_bias")
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or abs(value) > LOGIT_BIAS_RANGE):
            raise InvalidArgument(f"logit_bias values must be numbers in [-100, 100], got {value!r} "
                                  f"for token {key}", "logit_bias")
        out[int(token)] = float(value)
    return out


def defaults_from_generation_config(gen: dict | None, r1_family: bool = False) -> dict:
    """Sampling defaults of a model: its generation_config.json's values; what the file leaves
    out is transformers' default, or for the R1 family (r1_family: the model thinks) DeepSeek's
    temperature 0.6, top_p 0.95 (also when there is no file, e.g. a GGUF); a model with neither
    gets llama.cpp's defaults."""
    if not gen and not r1_family:
        return dict(FALLBACK_DEFAULTS)
    gen = gen or {}
    out = dict(R1_DEFAULTS if r1_family else HF_DEFAULTS)
    for key in out:
        if isinstance(gen.get(key), (int, float)) and not isinstance(gen.get(key), bool):
            out[key] = type(out[key])(gen[key])
    if gen.get("do_sample") is False:
        out["temperature"] = 0.0
    return out


def dry_breaker_ids(tokenizer, breakers) -> frozenset:
    """Token ids that break DRY sequences: every token whose text contains one of the breaker
    strings (llama.cpp's rule for a breaker that fits in one token; breakers spread over several
    tokens are not matched). Computed once per tokenizer and breaker list."""
    if tokenizer is None:
        return frozenset()
    cache = tokenizer.__dict__.setdefault("_dry_breakers", {})
    key = tuple(breakers)
    if key not in cache:
        texts = tokenizer.token_texts()
        cache[key] = frozenset(i for i, t in enumerate(texts) if any(b in t for b in key))
    return cache[key]


def dry_penalties(history: np.ndarray, breakers, allowed_length: int) -> dict:
    """{token: L}: for each token that would extend a repeat of the history's tail, the length L
    of the longest such repeat (the tail matched earlier in the history, then that token
    followed), if L >= allowed_length. Matches neither cross nor include a breaker token, and are
    followed back at most DRY_MAX_MATCH tokens (text-generation-webui's algorithm)."""
    n = history.size
    if n < 2:
        return {}
    last = int(history[-1])
    if last in breakers:
        return {}
    idx = np.flatnonzero(history[:-1] == last)  # earlier places of the last token
    if breakers and idx.size:
        nxt = history[idx + 1]
        idx = idx[~np.isin(nxt, np.fromiter(breakers, dtype=history.dtype, count=len(breakers)))]
    length = np.ones(idx.size, dtype=np.int64)
    alive = np.ones(idx.size, dtype=bool)
    for k in range(1, DRY_MAX_MATCH):
        if not alive.any() or k >= n:
            break
        j = idx - k
        prev = int(history[-1 - k])
        ok = alive & (j >= 0)
        if prev in breakers:
            break
        ok &= history[np.maximum(j, 0)] == prev
        length += ok
        alive = ok
    out: dict = {}
    for i, length_i in zip(idx.tolist(), length.tolist()):
        if length_i >= allowed_length:
            t = int(history[i + 1])
            out[t] = max(out.get(t, 0), length_i)
    return out


class Sampler:
    def __init__(self, params: SamplingParams, dry_breakers=frozenset(), context: int | None = None):
        """dry_breakers: the token ids that break DRY sequences (dry_breaker_ids); context: the
        model's context, the window of dry_penalty_last_n=-1."""
        self.p = params.check()
        self.rng = np.random.default_rng(params.seed)
        self.dry_breakers = frozenset(dry_breakers)
        self.context = context

    def apply_dry(self, x: np.ndarray, history) -> None:
        """Subtract the DRY penalty multiplier * base^(L - allowed_length) from the logit of each
        token that would extend a repeated sequence of length L >= allowed_length."""
        p = self.p
        if not p.dry:
            return
        last_n = p.dry_penalty_last_n if p.dry_penalty_last_n > 0 else self.context
        h = np.asarray(history, dtype=np.int64)
        if last_n is not None:
            h = h[-last_n:]
        for token, length in dry_penalties(h, self.dry_breakers, p.dry_allowed_length).items():
            if 0 <= token < x.size:
                x[token] -= p.dry_multiplier * p.dry_base ** (length - p.dry_allowed_length)

    def _penalized(self, logits: np.ndarray, history, generated=None) -> np.ndarray:
        """float64 logits after the penalties and logit_bias. history: the context's tokens
        (prompt and output) for the repetition and DRY penalties; generated: the output's tokens
        alone, for presence / frequency penalties (default: none)."""
        p = self.p
        x = np.array(logits, dtype=np.float64)
        if p.repetition_penalty != 1.0 and len(history):
            ids = np.unique(np.asarray(history))
            seen = x[ids]
            x[ids] = np.where(seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty)
        if (p.presence_penalty or p.frequency_penalty) and generated is not None and len(generated):
            ids, counts = np.unique(np.asarray(generated, dtype=np.int64), return_counts=True)
            x[ids] -= p.presence_penalty + p.frequency_penalty * counts
        if p.dry and len(history):  # after the penalties, before truncation (llama.cpp's order)
            self.apply_dry(x, history)
        if p.logit_bias:
            ids = np.fromiter(p.logit_bias, dtype=np.int64)
            x[ids] += np.fromiter(p.logit_bias.values(), dtype=np.float64)
        return x

    def _weights(self, x: np.ndarray) -> np.ndarray:
        """Penalized logits -> unnormalized probabilities after temperature, top-k, top-p, min-p
        (temperature > 0)."""
        p = self.p
        x = x / p.temperature
        if 0 < p.top_k < x.size:
            kth = np.partition(x, -p.top_k)[-p.top_k]
            x[x < kth] = -np.inf
        probs = np.exp(x - x.max())
        probs /= probs.sum()
        if p.top_p < 1.0:
            probs = _top_p(probs, p.top_p)
        if p.min_p > 0:
            probs[probs < p.min_p * probs.max()] = 0.0
        return probs

    def probs(self, logits: np.ndarray, history, generated=None) -> np.ndarray:
        """The distribution __call__ draws from, every filter applied: float64 [V] summing to 1
        (greedy: one-hot at the argmax). Speculative sampling compares these."""
        x = self._penalized(logits, history, generated)
        if self.p.temperature == 0:
            out = np.zeros_like(x)
            out[int(np.argmax(x))] = 1.0
            return out
        w = self._weights(x)
        return w / w.sum()

    def draw(self, weights: np.ndarray) -> int:
        """A token drawn from nonnegative weights (one uniform number from the sampler's rng)."""
        cdf = np.cumsum(weights)
        return int(min(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"), weights.size - 1))

    def __call__(self, logits: np.ndarray, history, generated=None) -> int:
        """The next token (see _penalized for history and generated)."""
        x = self._penalized(logits, history, generated)
        if self.p.temperature == 0:
            return int(np.argmax(x))
        return self.draw(self._weights(x))


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Zero all but the smallest set of most likely tokens whose probabilities reach top_p.
    Sorts only the few most likely tokens unless they fall short (the vocabulary is ~150K)."""
    for k in (min(256, probs.size), probs.size):
        top = np.argpartition(-probs, k - 1)[:k] if k < probs.size else np.arange(probs.size)
        order = top[np.argsort(-probs[top], kind="stable")]
        cum = np.cumsum(probs[order])
        if cum[-1] >= top_p or k == probs.size:
            keep = min(int(np.searchsorted(cum, top_p)) + 1, k)
            out = np.zeros_like(probs)
            out[order[:keep]] = probs[order[:keep]]
            return out
    return probs
