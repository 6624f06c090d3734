"""Speculative decoding: a proposer guesses the next k tokens, the model checks them all in one
forward pass (one read of the weights instead of k + 1), the longest agreeing prefix is kept and
the KV cache is rolled back past the rest.

Outputs are those of plain decoding. Each verified position goes through the same
generate.Sequence.advance as without speculation (stop strings, EOS, max_new_tokens, the
thinking budget, the loop guard), which chooses the token:
- a deterministic proposal d (prompt lookup, a greedy draft, forced tokens): the token is drawn
  from the target's distribution p by the normal sampler and d counts as accepted when they are
  equal. That is the speculative sampling rule for q = one-hot(d): accept with probability
  min(1, p(d)/1) = p(d), else draw from normalize(max(0, p - q)) = p without d.
- a sampled draft token d ~ q: accept with probability min(1, p(d)/q(d)), else draw from
  normalize(max(0, p - q)); P(token = x) = min(p(x), q(x)) + (1 - Σ min(p, q))·r(x) = p(x).
p and q are the final distributions after the same filters (sampling.Sampler.probs)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import InvalidArgument
from .sampling import Sampler

PROPOSERS = ("ngram", "draft", "mtp")
# tokens proposed per step: on a 2-core CPU a pass of k + 1 tokens costs ~1.8 decode steps at
# k = 4 and ~3 at k = 8 (BENCHMARKS.md), so longer guesses rarely pay
DEFAULT_K = 4
DEFAULT_N = 2  # prompt lookup: the shortest suffix looked up
DEFAULT_NGRAM_K = 8  # prompt lookup's cap (its guesses are as long as half the matched length)
DRAFT_PREFILL_CHUNK = 256


@dataclass
class Speculative:
    """How to speculate: proposer "ngram" (prompt lookup: the history's last n tokens found earlier
    in the prompt and output, at the occurrence that matches the history's end the longest; up to
    k of the tokens that followed it proposed, and up to half the matched length) or "draft" (a
    smaller model with the same tokenizer proposes k tokens, sampling as the target does) or "mtp"
    (DeepSeek-V3/R1's multi-token-prediction module in the target's checkpoint proposes the token
    after next: k = 1)."""
    proposer: str = "ngram"
    k: int | None = None      # tokens proposed per step, at most (default 4; ngram 8)
    n: int = DEFAULT_N        # ngram only
    draft: Any = None         # a loaded r1lite Model (proposer "draft")


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"speculative {name} must be an integer >= 1, got {value!r}",
                              "speculative")
    return int(value)


def parse_speculative(spec, target) -> "Speculation | None":
    """spec as given to generate(speculative=...): None/False (off), "ngram", "mtp", a draft Model, a
    dict {"proposer": ..., "k": ..., "n": ..., "draft": ...} or a Speculative. InvalidArgument
    names what is wrong."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        spec = Speculative(proposer=spec)
    elif isinstance(spec, dict):
        unknown = set(spec) - {"proposer", "k", "n", "draft"}
        if unknown:
            raise InvalidArgument(f"unknown speculative option(s) {sorted(unknown)}: use proposer, "
                                  f"k, n, draft", "speculative")
        spec = dict(spec)
        spec.setdefault("proposer", "draft" if spec.get("draft") is not None else "ngram")
        spec = Speculative(**spec)
    elif not isinstance(spec, Speculative) and hasattr(spec, "session") and hasattr(spec, "config"):
        spec = Speculative(proposer="draft", draft=spec)
    if not isinstance(spec, Speculative):
        raise InvalidArgument(f"speculative must be \"ngram\", \"mtp\", a draft Model, a dict or a "
                              f"Speculative, got {type(spec).__name__}", "speculative")
    if spec.proposer not in PROPOSERS:
        raise InvalidArgument(f"unknown speculative proposer {spec.proposer!r}: use one of "
                              f"{', '.join(PROPOSERS)}", "speculative")
    _check_device("model", target)
    if spec.proposer == "mtp":
        return Speculation(MtpProposer(target), _mtp_k(target, spec.k))
    if spec.proposer == "ngram":
        k = _positive("k", DEFAULT_NGRAM_K if spec.k is None else spec.k)
        return Speculation(NgramProposer(_positive("n", spec.n)), k)
    k = _positive("k", DEFAULT_K if spec.k is None else spec.k)
    if spec.draft is None:
        raise InvalidArgument("speculative proposer \"draft\" needs a draft model", "speculative")
    check_draft(target, spec.draft)
    return Speculation(DraftProposer(spec.draft, target.config["vocab_size"]), k)


def _mtp_k(target, k) -> int:
    """k of the MTP proposer: 1 (its one module predicts the token after next), checked."""
    if not target.config.get("mtp_layers"):
        raise InvalidArgument(f"speculative proposer \"mtp\" needs a DeepSeek-V3/R1 checkpoint with "
                              f"its multi-token-prediction module (num_nextn_predict_layers); "
                              f"{target.source} has none", "speculative")
    if k is not None and _positive("k", k) != 1:
        raise InvalidArgument(f"speculative k must be 1 with proposer \"mtp\" (its module proposes "
                              f"one token per step), got {k!r}", "speculative")
    return 1


def _check_device(what: str, model) -> None:
    device = getattr(model, "device", "cpu")
    if device != "cpu":
        raise InvalidArgument(f"speculative decoding is not supported on the {device} device (the "
                              f"{what} is there): it runs on the CPU only for now", "speculative")


def check_draft(target, draft) -> None:
    """InvalidArgument unless draft can propose tokens for target: another loaded model on the
    CPU with the same tokenizer (its vocabulary, special tokens and token texts)."""
    if not (hasattr(draft, "session") and hasattr(draft, "config")):
        raise InvalidArgument(f"the draft must be a loaded r1lite Model, got {type(draft).__name__}",
                              "speculative")
    if draft is target:
        raise InvalidArgument("the draft must be another Model object than the target (both hold "
                              "a KV cache): load the file twice", "speculative")
    _check_device("draft", draft)
    ta, da = target.tokenizer, draft.tokenizer
    tv, dv = target.config["vocab_size"], draft.config["vocab_size"]
    if (ta is None) != (da is None):
        which = "target" if ta is None else "draft"
        raise InvalidArgument(f"draft and target tokenizers differ: the {which} has none",
                              "speculative")
    if ta is None:
        if tv != dv:
            raise InvalidArgument(f"draft and target vocabularies differ: vocab_size {dv} vs {tv}",
                                  "speculative")
        return
    # Model vocabularies may be padded differently (R1-Distill-Qwen 1.5B: 151936, 7B: 152064);
    # the tokenizers must be the same.
    for name in ("vocab_size", "bos_id", "eos_ids", "think_open_id", "think_close_id"):
        a, b = getattr(da, name), getattr(ta, name)
        if a != b:
            raise InvalidArgument(f"draft and target tokenizers differ: {name} {a!r} vs {b!r}",
                                  "speculative")
    dt, tt = da.token_texts(), ta.token_texts()
    if dt != tt:
        i = next((i for i, (a, b) in enumerate(zip(dt, tt)) if a != b), min(len(dt), len(tt)))
        raise InvalidArgument(f"draft and target tokenizers differ: token {i} is "
                              f"{dt[i] if i < len(dt) else None!r} vs {tt[i] if i < len(tt) else None!r}",
                              "speculative")


class NgramProposer:
    """Prompt lookup: among the earlier occurrences of the history's last n tokens (n = 1: the last
    token), the one whose preceding tokens match the history's end the longest (ties: the most
    recent with a full continuation, else the earliest); it proposes the tokens that followed it,
    up to k and up to half the matched length L. A long match (the model is copying a passage of
    its input) earns a long guess, a chance 2- or 3-token match (plain prose) a single token: on
    the demo a 5-token pass costs ~3 decode steps, so a guess that is mostly wrong costs more than
    it saves (BENCHMARKS.md, issue 21)."""

    MAX_MATCH = 64  # backward match lengths counted up to this

    def __init__(self, n: int):
        self.n = n

    @contextmanager
    def run(self, seq):
        yield self

    def propose(self, history: list[int], k: int):
        """(tokens, None): deterministic proposals."""
        h = np.asarray(history, dtype=np.int64)
        size = min(self.n, h.size - 1)
        if size < 1:
            return [], None
        # occurrences of the last `size` tokens ending at i < len - 1 (each has a following token
        # and none is the suffix itself)
        windows = sliding_window_view(h[:-1], size)
        ends = np.flatnonzero((windows == h[-size:]).all(axis=1)) + size - 1
        if not ends.size:
            return [], None
        # matched length of each: how far back h[..end] equals h[..-1]
        depth = np.arange(min(self.MAX_MATCH, h.size - 1))
        idx = ends[:, None] - depth[None, :]
        valid = idx >= 0
        same = valid & (h[np.where(valid, idx, 0)] == h[h.size - 1 - depth][None, :])
        lengths = np.where(same.all(axis=1), depth.size, same.argmin(axis=1))
        best = ends[lengths == lengths.max()]
        full = best[best + 1 + k <= h.size]
        start = int(full[-1] if full.size else best[0]) + 1
        take = min(k, max(1, int(lengths.max()) // 2))
        return h[start:start + take].tolist(), None


def kept_prefix(fed: list[int], history: list[int]) -> int:
    """How much of a draft's cache (it holds `fed`) still agrees with `history`, keeping at least
    history's last token to feed: the cache is truncated to this, then fed the rest."""
    m = min(len(fed), len(history) - 1)
    diff = np.flatnonzero(np.asarray(fed[:m], np.int64) != np.asarray(history[:m], np.int64))
    return int(diff[0]) if diff.size else m


class DraftProposer:
    """A smaller model with the same tokenizer proposes k tokens, sampling with the target's
    settings (its own sampler and rng); greedy when the target is. Its cache holds a prefix of
    the history: rolled back to what still agrees, then fed the rest."""

    def __init__(self, draft, target_vocab: int):
        self.draft, self.vocab = draft, target_vocab
        self.eos_ids: set = set()

    @contextmanager
    def run(self, seq):
        p = seq.sampler.p
        seed = None if p.seed is None else p.seed + 1  # its own stream, reproducible with the seed
        self.sampler = Sampler(type(p)(**{**p.__dict__, "seed": seed}), seq.sampler.dry_breakers,
                               seq.context)
        self.sampling = p.temperature > 0
        self.eos_ids = seq.eos_ids
        self.fed: list[int] = []
        with self.draft.session() as s:
            s.reset()
            self.s = s
            yield self

    def _logits(self, row: np.ndarray) -> np.ndarray:
        """The draft's logits over the target's vocabulary (padding ids it lacks: -inf)."""
        if row.size == self.vocab:
            return row
        out = np.full(self.vocab, -np.inf, dtype=np.float32)
        m = min(row.size, self.vocab)
        out[:m] = row[:m]
        return out

    def propose(self, history: list[int], k: int):
        """(tokens, q per token) for a sampling draft, (tokens, None) for a greedy one."""
        h = np.asarray(history, dtype=np.int64)
        if h.size >= self.s.context:  # the draft's context is full: no more proposals
            return [], None
        keep = kept_prefix(self.fed, history)
        self.s.truncate(keep)
        for i in range(keep, h.size, DRAFT_PREFILL_CHUNK):
            row = self.s.forward(h[i:i + DRAFT_PREFILL_CHUNK])
        self.fed = h.tolist()
        k = min(k, self.s.context - h.size)  # the draft's own context
        tokens, qs, hist = [], [], list(history)
        for i in range(k):
            q = self.sampler.probs(self._logits(row), hist)
            d = self.sampler.draw(q) if self.sampling else int(np.argmax(q))
            tokens.append(d)
            qs.append(q)
            hist.append(d)
            if d in self.eos_ids:  # nothing follows an end of sequence
                break
            if i + 1 < k:
                row = self.s.forward([d])
                self.fed.append(d)
        return tokens, (qs if self.sampling else None)


class MtpProposer:
    """DeepSeek-V3/R1's MTP module (ARCH.md §12, csrc/model/mtp.cpp): at position j it reads the
    model's hidden state h_j and the token t_{j+1} and predicts t_{j+2}. Its cache follows the
    model's: every position the model keeps is fed to it once the token after it is known (during
    the prompt chunk by chunk, then after each verification), so at a step with the cache holding
    history[:-1] it runs on the new positions and its last row proposes the token after
    history[-1], greedily (a deterministic proposal: the verification rule keeps sampling exact)."""

    def __init__(self, target):
        self.target = target
        self.s = None
        self.pending: list[np.ndarray] = []  # hidden states of positions mtp_length .. length - 1
        self.fed: list[int] = []             # the prompt fed so far

    @contextmanager
    def run(self, seq):
        yield self

    def prefilled(self, s, ids) -> None:
        """After the model was fed a chunk of the prompt: keep its hidden states and run the
        module on every position whose next token is known."""
        if s.length == len(ids):  # the first chunk: a new sequence
            self.s, self.pending, self.fed = s, [], []
        self.fed += list(ids)
        self.pending.append(s.hidden())
        self._catch_up(self.fed)

    def verified(self, s, base: int) -> None:
        """After a verification pass fed from position base and the cache was cut to what was
        kept: the kept positions' hidden states."""
        self.pending.append(s.hidden()[:s.length - base])

    def _catch_up(self, history) -> np.ndarray | None:
        """Run the module on the pending positions j < len(history) - 1 (their t_{j+1} known);
        the logits of the last one, or None when there was none."""
        j0, end = self.s.mtp_length, min(self.s.length, len(history) - 1)
        if end <= j0:
            return None
        h = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending = [h[end - j0:]]
        return self.s.forward_mtp(np.asarray(history[j0 + 1:end + 1], np.int32), h[:end - j0])[-1]

    def propose(self, history: list[int], k: int):
        """([the module's greedy guess of the token after history[-1]], None)."""
        logits = self._catch_up(history)
        return ([] if logits is None else [int(np.argmax(logits))]), None


class Speculation:
    """Drives a generate.Sequence through a session with speculative steps (GenerationRun calls
    decode() in place of its token-by-token loop)."""

    def __init__(self, proposer, k: int):
        self.proposer, self.k = proposer, k

    @staticmethod
    def _rule(seq, d: int, q: np.ndarray):
        """The choice at a position verifying a sampled draft token d ~ q (module doc)."""
        def pick(logits, history, generated=None):
            p = seq.sampler.probs(logits, history, generated)
            if seq.sampler.rng.random() * q[d] < p[d]:  # accept with probability min(1, p/q)
                return d
            residual = np.maximum(p - q, 0.0)
            return seq.sampler.draw(residual if residual.sum() > 0 else p)
        return pick

    def prefilled(self, s, ids) -> None:
        """Called by the generation loop after each prompt chunk fed (the MTP proposer keeps the
        hidden states)."""
        hook = getattr(self.proposer, "prefilled", None)
        if hook is not None:
            hook(s, ids)

    def decode(self, seq, s, logits):
        """Yields Pieces until seq finishes, starting from the logits of the prompt's last
        position; returns the speculation stats."""
        yield from seq.advance(logits)
        steps = proposed = accepted = 0
        before = len(seq.tokens)
        with self.proposer.run(seq) as prop:
            while seq.next_token is not None:
                base = s.length  # the cache holds seq.history[:-1]; next_token is not fed yet
                room = min(self.k, s.context - base - 1)
                if seq.max_new_tokens is not None:
                    room = min(room, seq.max_new_tokens - len(seq.tokens))
                props, qs = [], None
                if seq.forced:  # tokens the sequence will insert whatever the model says
                    props = list(seq.forced)[:room]
                elif room > 0:
                    props, qs = prop.propose(seq.history, room)
                rows = s.forward([seq.next_token] + props, all_positions=True)
                steps += 1
                proposed += len(props)
                for i, row in enumerate(rows):
                    sampled = qs is not None and i < len(props)
                    pick = self._rule(seq, props[i], qs[i]) if sampled else None
                    yield from seq.advance(row, pick)
                    if seq.next_token is None:
                        break
                    if i < len(props) and seq.next_token == props[i]:
                        accepted += 1
                        continue
                    s.truncate(base + 1 + i)  # drop the rejected proposals
                    break
                verified = getattr(prop, "verified", None)
                if verified is not None and seq.next_token is not None:
                    verified(s, base)
        made = len(seq.tokens) - before
        return dict(spec_steps=steps, spec_proposed=proposed, spec_accepted=accepted,
                    acceptance_rate=accepted / proposed if proposed else 0.0,
                    tokens_per_step=made / steps if steps else 0.0)
