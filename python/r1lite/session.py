"""Holds on a model's KV cache: one sequence stepped through it (Session), or several at once (Batch)."""

from __future__ import annotations

import numpy as np


class Session:
    """One sequence through the cache of a model held by Model.session(): what generation and
    benchmarks step. The cache keeps what was fed until reset()."""

    def __init__(self, core):
        self._core = core

    @property
    def context(self) -> int:
        return self._core.context

    def reset(self) -> None:
        """Empty the cache."""
        self._core.reset()

    @property
    def length(self) -> int:
        """Positions the cache holds."""
        return self._core.n_past

    def truncate(self, n: int) -> None:
        """Keep the first n cached positions and drop the rest (the next token fed goes to
        position n): how speculative decoding discards rejected tokens. ValueError unless
        0 <= n <= length."""
        self._core.truncate(n)

    def forward(self, ids, all_positions: bool = False) -> np.ndarray:
        """Feed ids after what the cache holds: float32 logits of the last position
        ([vocab_size]), or of every fed position ([len(ids), vocab_size]) with all_positions."""
        return self._core.forward(ids, all_positions)

    def hidden(self) -> np.ndarray:
        """float32 hidden states [n, hidden_size] of the n tokens the last forward() fed, as the
        output head reads them (after the final norm): what DeepSeek's MTP module takes. Valid
        until the next call that runs the model (truncate keeps them)."""
        return self._core.last_hidden()

    @property
    def mtp_length(self) -> int:
        """Positions the MTP module's cache holds (it trails the model's: position j needs token
        j + 1)."""
        return self._core.mtp_length

    def forward_mtp(self, ids, hidden) -> np.ndarray:
        """DeepSeek's MTP module over positions j = mtp_length, ... (all fed to the model
        already): ids are the tokens t_{j+1}, hidden the model's h_j ([len(ids), hidden_size]);
        float32 logits [len(ids), vocab_size] predicting t_{j+2}. ValueError when the model has
        no MTP module."""
        return self._core.forward_mtp(ids, hidden)

    def forward_argmax(self, ids) -> int:
        """Feed ids; the greedy next token (picked on the device by a CUDA model: no logits copied)."""
        on_device = getattr(self._core, "forward_argmax", None)
        return int(on_device(ids)) if on_device else int(self._core.forward(ids, False).argmax())


class Batch:
    """Several sequences through one model at once (continuous batching, CPU): Model.batch()
    holds the model until close(), so no other caller uses it meanwhile."""

    def __init__(self, core, release):
        self._core, self._release = core, release

    @property
    def context(self) -> int:
        return self._core.context

    def open_sequence(self) -> int:
        """A new empty sequence's id (its cache grows as it is fed)."""
        return self._core.open_sequence()

    def close_sequence(self, seq_id: int) -> None:
        """Free a sequence's cache; its id may be reused."""
        self._core.close_sequence(seq_id)

    def truncate_sequence(self, seq_id: int, n: int) -> None:
        """Keep the first n cached positions of a sequence (ValueError unless 0 <= n <= its
        length)."""
        self._core.truncate_sequence(seq_id, n)

    def fork_sequence(self, seq_id: int, n: int) -> int:
        """A new sequence whose cache is a copy of the first n positions of seq_id's (ValueError
        unless 0 <= n <= its length)."""
        return self._core.fork_sequence(seq_id, n)

    def forward_batch(self, segments) -> list:
        """Feed each (seq_id, ids) segment after what its sequence holds, in one batched pass:
        the float32 logits of each segment's last position ([vocab_size]), in order. A segment
        (seq_id, ids, True) gets the logits of every position it fed ([len(ids), vocab_size]):
        how the engine verifies speculated tokens."""
        out = self._core.forward_batch(segments)
        if all(len(seg) == 2 or not seg[2] for seg in segments):
            return out
        rows, at = [], 0
        for seg in segments:
            every = len(seg) == 3 and bool(seg[2])
            n = len(seg[1]) if every else 1
            rows.append(out[at:at + n] if every else out[at])
            at += n
        return rows

    def hidden(self) -> np.ndarray:
        """float32 hidden states [n, hidden_size] of every position the last forward_batch fed
        (segment after segment), as the output head reads them: what DeepSeek's MTP module takes."""
        return self._core.last_hidden()

    def mtp_length(self, seq_id: int) -> int:
        """Positions the MTP module's cache of a sequence holds (Session.mtp_length)."""
        return self._core.sequence_mtp_length(seq_id)

    def forward_mtp(self, seq_id: int, ids, hidden) -> np.ndarray:
        """Session.forward_mtp on a batch sequence."""
        return self._core.forward_mtp(ids, hidden, seq_id)

    def prompt_logits(self, ids, chunk: int):
        """(start, logits [n, vocab]) of every position of ids, chunk by chunk, fed through the
        model's own cache (not a batch sequence): for prompt logprobs."""
        self._core.reset()
        for i in range(0, len(ids), chunk):
            yield i, self._core.forward(ids[i:i + chunk], True)

    def close(self) -> None:
        """Give the model back (once)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
