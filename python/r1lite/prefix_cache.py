"""Prefix reuse across requests: a finished sequence's KV cache is kept (parked) with the tokens
it holds, and a new request whose prompt starts with some of them takes that cache over,
truncated to the shared prefix, instead of computing those positions again. A chat's next turn
is the common case: its prompt repeats the conversation so far.

R1's chat template drops the reasoning of earlier assistant turns, so the next turn's prompt
departs from the cached tokens where the previous answer's reasoning began (right after the
assistant marker and "<think>"): the shared prefix is the previous turn's whole prompt, and the
answer text after it is recomputed (short next to the conversation). Nothing template-specific
is needed: the match is token by token.

Parked caches keep their pages; the least recently parked are freed first when their total
exceeds the memory cap (`r1lite serve --cache-ram MiB`; 0 turns reuse off). Rows are reused as
they are: the same numbers a cold run would compute (batched and single-token passes give
identical rows), so greedy outputs do not change.
"""

from __future__ import annotations

from collections import OrderedDict

PAGE = 256  # positions per cache page (KvLayout::kPagePositions): memory is held in whole pages


class PrefixCache:
    def __init__(self, batch, bytes_per_token: int, cap_bytes: int):
        self.batch, self.bytes_per_token, self.cap_bytes = batch, bytes_per_token, cap_bytes
        self.parked: OrderedDict[int, list[int]] = OrderedDict()  # seq_id -> tokens its cache holds
        self.bytes = 0  # memory the parked caches hold (read by /metrics from another thread)
        self.lookups = self.hits = self.reused_tokens = 0

    def _bytes(self, tokens: list[int]) -> int:
        return -(-len(tokens) // PAGE) * PAGE * self.bytes_per_token

    def park(self, seq_id: int, tokens: list[int]) -> None:
        """Keep a finished sequence's cache (tokens: exactly what was fed to it), or free it when
        reuse is off; then free the oldest until the cap holds."""
        self.parked[seq_id] = list(tokens)
        self.bytes += self._bytes(tokens)
        while self.parked and self.bytes > self.cap_bytes:
            old, old_tokens = self.parked.popitem(last=False)
            self.bytes -= self._bytes(old_tokens)
            self.batch.close_sequence(old)

    def longest_prefix(self, prompt: list[int]) -> int:
        """How many of prompt's tokens (all but the last) the best parked cache holds."""
        return max((common_prefix(t, prompt, len(prompt) - 1) for t in self.parked.values()), default=0)

    def take(self, prompt: list[int]) -> tuple[int | None, int]:
        """(seq_id, positions reused) of the parked cache sharing the longest prefix with
        `prompt`, truncated to it and no longer parked; (None, 0) when none shares a token. At
        least the prompt's last token is left to feed: its logits start the generation."""
        self.lookups += 1
        best, best_len = None, 0
        for seq_id, tokens in self.parked.items():
            n = common_prefix(tokens, prompt, len(prompt) - 1)
            if n > best_len:
                best, best_len = seq_id, n
        if best is None:
            return None, 0
        self.bytes -= self._bytes(self.parked.pop(best))
        self.batch.truncate_sequence(best, best_len)
        self.hits += 1
        self.reused_tokens += best_len
        return best, best_len

    def clear(self) -> None:
        for seq_id in self.parked:
            self.batch.close_sequence(seq_id)
        self.parked.clear()
        self.bytes = 0


def common_prefix(a: list[int], b: list[int], limit: int) -> int:
    """How many leading tokens a and b share, at most limit."""
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
