"""Log-probabilities of tokens under the model's own distribution: the log-softmax of the raw
logits, before penalties, logit_bias, temperature and truncation (what OpenAI and vLLM report)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgument

MAX_TOP = 20  # the most alternatives per token (OpenAI's top_logprobs cap)


@dataclass
class TokenLogprob:
    token: int      # the token's id
    logprob: float  # its log-probability
    top: list       # [(id, logprob)] of the `top` most likely tokens, most likely first


def check_top(value, name: str = "logprobs") -> None:
    """InvalidArgument unless value is None or an integer in [0, MAX_TOP]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOP:
        raise InvalidArgument(f"{name} must be an integer in [0, {MAX_TOP}], got {value!r}", name)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-softmax along the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _top(lp: np.ndarray, k: int) -> list:
    if k == 0:
        return []
    ids = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
    ids = ids[np.lexsort((ids, -lp[ids]))]  # most likely first, ties by id
    return [(int(i), float(lp[i])) for i in ids]


def token_logprob(logits: np.ndarray, token: int, top: int) -> TokenLogprob:
    """The log-probability of token under one position's logits, and the top alternatives."""
    lp = log_softmax(logits)
    return TokenLogprob(int(token), float(lp[token]), _top(lp, top))


def following_logprobs(rows: np.ndarray, next_ids, top: int) -> list[TokenLogprob]:
    """rows[i] is the logits after some token; the logprob of next_ids[i] under it, for each i."""
    lp = log_softmax(rows)
    return [TokenLogprob(int(t), float(lp[i, t]), _top(lp[i], top)) for i, t in enumerate(next_ids)]
