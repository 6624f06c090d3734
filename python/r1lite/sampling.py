"""Choosing the next token from logits: greedy, or temperature / top-k / top-p / min-p sampling
with a repetition penalty, in the order transformers applies them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgument

# Without a generation_config.json: llama.cpp's defaults.
FALLBACK_DEFAULTS = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repetition_penalty=1.0)


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 0             # 0: off
    top_p: float = 1.0         # 1: off
    min_p: float = 0.0         # 0: off
    repetition_penalty: float = 1.0
    seed: int | None = None

    def check(self) -> "SamplingParams":
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
        return self


def defaults_from_generation_config(gen: dict | None) -> dict:
    """Sampling defaults of a model (R1 family: temperature 0.6, top_p 0.95)."""
    if not gen:
        return dict(FALLBACK_DEFAULTS)
    out = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    for key in out:
        if isinstance(gen.get(key), (int, float)) and not isinstance(gen.get(key), bool):
            out[key] = type(out[key])(gen[key])
    if gen.get("do_sample") is False:
        out["temperature"] = 0.0
    return out


class Sampler:
    def __init__(self, params: SamplingParams):
        self.p = params.check()
        self.rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray, history) -> int:
        p = self.p
        x = np.array(logits, dtype=np.float64)
        if p.repetition_penalty != 1.0 and len(history):
            ids = np.unique(np.asarray(history))
            seen = x[ids]
            x[ids] = np.where(seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty)
        if p.temperature == 0:
            return int(np.argmax(x))
        x /= p.temperature
        if 0 < p.top_k < x.size:
            kth = np.partition(x, -p.top_k)[-p.top_k]
            x[x < kth] = -np.inf
        probs = np.exp(x - x.max())
        probs /= probs.sum()
        if p.top_p < 1.0:
            probs = _top_p(probs, p.top_p)
        if p.min_p > 0:
            probs[probs < p.min_p * probs.max()] = 0.0
        cdf = np.cumsum(probs)
        return int(min(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"), x.size - 1))


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
