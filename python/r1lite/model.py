"""The Model users hold: logits today; generation builds on it."""

from __future__ import annotations

import numpy as np


def check_tokens(tokens, vocab_size: int, context: int) -> np.ndarray:
    """Token ids as an int32 array, or ValueError naming what is wrong with them."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be a flat sequence of ids, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("tokens is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"token id {int(arr[i])} at index {i} is outside the vocabulary [0, {vocab_size})")
    if arr.size > context:
        raise ValueError(f"{arr.size} tokens do not fit the context of {context} positions")
    return arr.astype(np.int32)


class Model:
    """A loaded model. Create it with r1lite.load()."""

    def __init__(self, core, config: dict, source: str):
        self._core = core
        self._config = config
        self.source = source

    @property
    def config(self) -> dict:
        """The normalized config (architecture, vocab_size, hidden_size, num_layers, context, ...)."""
        return dict(self._config)

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def context(self) -> int:
        return self._config["context"]

    def logits(self, tokens, *, chunk: int | None = None) -> np.ndarray:
        """float32 logits [len(tokens), vocab_size] at every position, from an empty cache.

        chunk=k feeds the tokens k at a time through the KV cache (same result up to rounding).
        """
        ids = check_tokens(tokens, self._config["vocab_size"], self.context)
        if chunk is None:
            chunk = len(ids)
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        self._core.reset()
        parts = [self._core.forward(ids[i:i + chunk], True) for i in range(0, len(ids), chunk)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __repr__(self):
        c = self._config
        return (f"<r1lite.Model {c['architecture']} {c['num_layers']} layers, "
                f"hidden {c['hidden_size']}, context {c['context']}, from {self.source}>")
