"""Speculative decoding in the server's engine (engine.py): each decoding sequence of a batch
whose proposer has a guess feeds its next token and the guessed ones as one segment of the
batched forward pass, with the logits of every one of those positions (session.Batch's
all-positions segments); the engine keeps the agreeing prefix and rolls the sequence's cache back
past the rest. The choice at each position is generate.Sequence.advance's, as in speculative.py:
the proposals here are deterministic (prompt lookup, the MTP module's greedy guess, a draft
model's greedy guesses), so the speculative sampling rule reduces to sampling from the target and
comparing (speculative.py's module doc), and a seeded request draws the same numbers as without
speculation. A draft model decodes each request's guesses in a sequence of its own (the draft's
session.Batch, held by the engine while it runs), one request after another: its cost grows
with the batch, and adaptive k stops the proposals of a request whose guesses are rejected.

Adaptive k: a sequence proposes k tokens at a step, k from its running acceptance rate r (an
exponential average of accepted / proposed per verification, the newest weighted ALPHA; it
starts at 1): k = floor(r * (k_max + 1)), at most k_max. So every proposal is made while about
every token is accepted, none once fewer than 1 in k_max + 1 are. A sequence at k = 0 probes
with one token after PROBE_WAIT steps without proposals; a rejected probe doubles the wait (up
to PROBE_MAX_WAIT steps), an accepted one raises r and resets it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgument
from .speculative import (DEFAULT_N, DRAFT_PREFILL_CHUNK, DraftProposer, NgramProposer, kept_prefix,
                          parse_speculative)

ALPHA = 0.25          # weight of the newest verification in the running acceptance rate
PROBE_WAIT = 4        # decode steps at k = 0 before a one-token probe
PROBE_MAX_WAIT = 64   # the longest wait between probes


@dataclass
class BatchSpeculation:
    """The server's speculation: proposer "ngram" (prompt lookup, n), "mtp" (DeepSeek's MTP
    module) or "draft" (a smaller model with the same tokenizer, greedy), at most k tokens per
    step. parse() checks it against the model."""
    proposer: str
    k: int
    n: int = DEFAULT_N
    draft: Any = None  # proposer "draft": the draft r1lite Model
    vocab: int = 0     # proposer "draft": the target's vocabulary size

    @classmethod
    def parse(cls, spec, model) -> "BatchSpeculation | None":
        """spec: None (off), "ngram", "mtp" or a dict {"proposer", "k", "n", "draft"} (a draft:
        another loaded Model); InvalidArgument names what is wrong."""
        if spec is None or isinstance(spec, cls):
            return spec
        if not isinstance(spec, (str, dict)):
            raise InvalidArgument(f"the server's speculative setting must be \"ngram\", \"mtp\" or a "
                                  f"dict, got {type(spec).__name__}", "speculative")
        checked = parse_speculative(spec, model)  # the same checks as generate(speculative=...)
        if isinstance(checked.proposer, NgramProposer):
            return cls("ngram", checked.k, checked.proposer.n)
        if isinstance(checked.proposer, DraftProposer):
            return cls("draft", checked.k, draft=checked.proposer.draft, vocab=model.config["vocab_size"])
        return cls("mtp", checked.k)

    def proposer_for(self, batch, seq_id: int, draft_batch=None):
        """A new request's proposer: propose(history, k) -> (tokens, None). draft_batch: the draft
        model's session.Batch (proposer "draft")."""
        if self.proposer == "mtp":
            return SequenceMtp(batch, seq_id)
        if self.proposer == "draft":
            return SequenceDraft(draft_batch, self.vocab)
        return NgramProposer(self.n)


class AdaptiveK:
    """How many tokens a sequence proposes at its next step (the module doc's rule)."""

    def __init__(self, k_max: int):
        self.k_max, self.rate = k_max, 1.0
        self.wait, self.idle = PROBE_WAIT, 0  # steps to wait before a probe, steps waited

    def next_k(self) -> int:
        k = min(self.k_max, int(self.rate * (self.k_max + 1)))
        if k > 0:
            return k
        self.idle += 1
        return 1 if self.idle > self.wait else 0

    def verified(self, proposed: int, accepted: int) -> None:
        """After a step that verified `proposed` guesses (not forced tokens)."""
        if proposed == 0:
            return
        probe = self.idle > self.wait
        self.rate += ALPHA * (accepted / proposed - self.rate)
        if probe:
            self.idle = 0
            self.wait = PROBE_WAIT if accepted else min(2 * self.wait, PROBE_MAX_WAIT)


class RequestSpeculation:
    """One request's speculation in the engine: its proposer, adaptive k and counts."""

    def __init__(self, spec: BatchSpeculation, batch, seq_id: int, draft_batch=None):
        self.proposer = spec.proposer_for(batch, seq_id, draft_batch)
        self.adaptive = AdaptiveK(spec.k)
        self.k_max = spec.k
        self.steps = self.proposed = self.accepted = 0
        self.made = 0  # tokens generated by the steps that verified something

    def propose(self, seq, room: int) -> tuple[list, bool]:
        """(the tokens to verify after seq.next_token, whether they are forced ones), at most
        room of them."""
        if seq.forced:  # tokens the sequence inserts whatever the model says: all accepted
            return list(seq.forced)[:min(room, self.k_max)], True
        k = min(room, self.adaptive.next_k())
        if k <= 0:
            return [], False
        tokens, _ = self.proposer.propose(seq.history, k)
        return list(tokens)[:k], False

    def verified(self, proposed: int, accepted: int, made: int, forced: bool) -> None:
        self.steps += 1
        self.proposed += proposed
        self.accepted += accepted
        self.made += made
        if not forced:
            self.adaptive.verified(proposed, accepted)

    def fed(self, hidden, history) -> None:
        """After a forward: the hidden states of the positions the sequence kept (for MTP)."""
        if isinstance(self.proposer, SequenceMtp):
            self.proposer.fed(hidden, history)

    def close(self) -> None:
        """The request has ended: free what its proposer holds (a draft model's sequence)."""
        if isinstance(self.proposer, SequenceDraft):
            self.proposer.close()

    @property
    def wants_hidden(self) -> bool:
        return isinstance(self.proposer, SequenceMtp)

    def stats(self) -> dict:
        """Like speculative.Speculation.decode's, over the steps that verified guesses."""
        return dict(spec_steps=self.steps, spec_proposed=self.proposed, spec_accepted=self.accepted,
                    acceptance_rate=self.accepted / self.proposed if self.proposed else 0.0,
                    tokens_per_step=self.made / self.steps if self.steps else 0.0)


class SequenceMtp:
    """speculative.MtpProposer for a sequence of a Batch: the engine hands over the hidden states
    of the positions the sequence keeps after every forward (prompt chunks included), and the
    module runs at once on each position j whose token t_{j+1} is known, so that its cache
    follows the model's; its last row's greedy choice is the guess for the token after
    history[-1]."""

    def __init__(self, batch, seq_id: int):
        self.batch, self.id = batch, seq_id
        self.pending: list[np.ndarray] = []  # hidden states of positions mtp_length .. length - 1
        self.guess: tuple[int, int] | None = None  # (history index it guesses, token)

    def fed(self, hidden: np.ndarray, history: list[int]) -> None:
        self.pending.append(hidden)
        j0 = self.batch.mtp_length(self.id)
        h = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        end = min(j0 + len(h), len(history) - 1)
        if end <= j0:
            self.pending = [h]
            return
        self.pending = [h[end - j0:]]
        ids = np.asarray(history[j0 + 1:end + 1], np.int32)
        logits = self.batch.forward_mtp(self.id, ids, h[:end - j0])
        self.guess = (end + 1, int(np.argmax(logits[-1])))  # row j = end - 1 predicts t_{end+1}

    def propose(self, history: list[int], k: int):
        if self.guess is None or self.guess[0] != len(history):
            return [], None
        return [self.guess[1]], None


class SequenceDraft:
    """speculative.DraftProposer for a request of the engine: a sequence of the draft model's
    session.Batch (opened at the first proposal, closed with the request) holding a prefix of the
    history, rolled back to what still agrees and fed the rest; its guesses are greedy (the
    engine's rule wants deterministic ones: a sampling request keeps a guess when its draw from
    the target equals it)."""

    def __init__(self, draft_batch, vocab: int):
        self.batch, self.vocab = draft_batch, vocab
        self.id: int | None = None
        self.fed: list[int] = []  # exactly the tokens its cache holds

    def propose(self, history: list[int], k: int):
        if len(history) >= self.batch.context:  # the draft's context is full: no more guesses
            return [], None
        if self.id is None:
            self.id = self.batch.open_sequence()
        keep = kept_prefix(self.fed, history)
        self.batch.truncate_sequence(self.id, keep)
        self.fed = list(history)
        for i in range(keep, len(history), DRAFT_PREFILL_CHUNK):
            row = self.batch.forward_batch([(self.id, history[i:i + DRAFT_PREFILL_CHUNK])])[0]
        k = min(k, self.batch.context - len(history))  # the draft's own context
        tokens = []
        for i in range(k):
            d = int(np.argmax(row[:self.vocab]))  # ids past the target's vocabulary: never
            tokens.append(d)
            if i + 1 < k:
                row = self.batch.forward_batch([(self.id, [d])])[0]
                self.fed.append(d)
        return tokens, None

    def close(self) -> None:
        if self.id is not None:
            self.batch.close_sequence(self.id)
            self.id, self.fed = None, []
