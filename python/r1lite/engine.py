"""Continuous batching: one thread steps every active request through the model together.

Each step feeds every active sequence in one batched forward (the core reads each weight once for
the whole batch): a new request's prompt in chunks, the others one token each. Requests join at
the next step and leave when finished or cancelled; their cache is parked for a later request
that starts with the same tokens (prefix_cache.py), or freed. Each request has
its own generate.Sequence (sampler with its seed, stop strings, reasoning split), so its output
does not depend on what else is in the batch.

With speculation (batch_speculation.py) a decoding sequence whose proposer has guesses feeds its
next token and the guesses in the same batched forward, gets the logits of all those positions,
keeps what agrees and rolls its cache back past the rest.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .batch_speculation import BatchSpeculation, RequestSpeculation
from .generate import PREFILL_CHUNK, Sequence
from .prefix_cache import PrefixCache, common_prefix

DEFAULT_CACHE_RAM = 1 << 30  # bytes of finished sequences' KV caches kept for prefix reuse


class Request:
    """One submitted generation (a fresh Sequence from Model.new_sequence). The engine calls
    on_event(kind, payload) from its thread: ("pieces", [Piece, ...]) as text is produced, then
    ("done", Generation) or ("error", str)."""

    def __init__(self, seq: Sequence, on_event):
        self.seq = seq
        self.on_event = on_event
        self.cancelled = False
        self.seq_id: int | None = None
        self.fed = 0  # prompt tokens in its cache so far (computed, or reused: prefix_cache.py)
        self.reused = 0  # prompt tokens whose cache rows came from an earlier request
        self.looked_up = False  # whether the prefix cache was asked for this prompt
        self.cached: list[int] = []  # exactly the tokens its cache holds
        self.cache_ok = True  # False once a failed step may have left its cache half-fed
        self.scored = False  # prompt logprobs recorded (when the sequence asks for them)
        self.t_start = time.perf_counter()
        self.token_times: list[float] = []  # when each generated token was sampled (metrics)
        self.spec: RequestSpeculation | None = None  # its speculation, when the engine speculates

    def cancel(self) -> None:
        """Stop generating (a client went away); the engine frees the slot at its next step."""
        self.cancelled = True

    def notify(self, kind: str, payload) -> None:
        """on_event, cancelling the request if its receiver is gone (e.g. the event loop closed)."""
        try:
            self.on_event(kind, payload)
        except Exception:
            self.cancel()


class Engine:
    """Owns a Model while serving (Model.batch(), from start() to stop()), so no other caller
    can use it meanwhile (and a draft model's, with speculative decoding by a draft).
    speculative: None, "ngram", "mtp", a dict {"proposer", "k", "n", "draft"} or a
    batch_speculation.BatchSpeculation."""

    def __init__(self, model, max_batch: int = 8, cache_ram: int = DEFAULT_CACHE_RAM,
                 speculative=None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if isinstance(cache_ram, bool) or not isinstance(cache_ram, int) or cache_ram < 0:
            raise ValueError(f"cache_ram must be a number of bytes >= 0, got {cache_ram!r}")
        self.model, self.max_batch, self.cache_ram = model, max_batch, cache_ram
        self.speculation = BatchSpeculation.parse(speculative, model)
        self.batch = None  # the model's session.Batch while running
        self.draft_batch = None  # the draft model's, while running (speculation by a draft)
        self.prefix: PrefixCache | None = None  # finished sequences' caches, while running
        self._waiting: deque[Request] = deque()
        self._active: list[Request] = []
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="r1lite-engine", daemon=True)
        self.steps = 0
        self.widest_batch = 0  # the most sequences one step has carried
        self.positions = 0  # positions fed to the model (prompts, tokens and verified guesses)
        self.proposed = self.accepted = 0  # guesses verified and kept, all requests

    def start(self) -> "Engine":
        self.batch = self.model.batch()
        if self.speculation is not None and self.speculation.draft is not None:
            self.draft_batch = self.speculation.draft.batch()
        if self.cache_ram:
            self.prefix = PrefixCache(self.batch, self.model.kv_bytes_per_token, self.cache_ram)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join()
        for req in list(self._active) + list(self._waiting):
            self._release(req)
            req.notify("error", "the server is shutting down")
        self._active.clear()
        self._waiting.clear()
        if self.prefix is not None:
            self.prefix.clear()
        self.batch.close()
        if self.draft_batch is not None:
            self.draft_batch.close()

    def crashed(self) -> bool:
        """Started, not stopped, yet its thread has ended (an error outside a step): no request
        would ever be answered (serving.Replica's health check)."""
        return self.batch is not None and not self._stop and not self._thread.is_alive()

    def submit(self, request: Request) -> Request:
        with self._wake:
            self._waiting.append(request)
            self._wake.notify()
        return request

    def counts(self) -> dict:
        with self._wake:
            return {"active": len(self._active), "waiting": len(self._waiting)}

    # -- the engine thread ---------------------------------------------------------------------

    def _admit(self) -> None:
        """Move waiting requests into free slots (called with the lock held)."""
        while self._waiting and len(self._active) < self.max_batch:
            req = self._waiting.popleft()
            if req.cancelled:
                continue
            self._active.append(req)
            self._place(req)

    def _place(self, req: Request) -> None:
        """Give a request its cache: a copy of the longest prefix of its prompt that an active
        request's cache holds (n choices of one prompt, a conversation still being answered), a
        parked cache taken over (prefix_cache.py), or a new one. While an active request is
        still feeding a longer shared prefix, the request waits for it (seq_id stays None) and
        _step places it again, so that n choices compute their prompt once."""
        prompt = req.seq.prompt
        if self.prefix is None or req.seq.prompt_logprobs is not None:
            req.seq_id = self.batch.open_sequence()
            self._speculate(req)
            return
        limit = len(prompt) - 1  # its last token is fed: its logits start the generation
        leader, shared, later = None, 0, 0
        for other in self._active:
            if other is req or other.seq_id is None or other.cancelled or not other.cache_ok:
                continue
            n = common_prefix(other.cached, prompt, limit)
            if n > shared:
                leader, shared = other, n
            if other.fed < len(other.seq.prompt):  # its cache will hold more of its prompt
                later = max(later, common_prefix(other.seq.prompt, prompt, limit))
        if later > max(shared, PREFILL_CHUNK // 4):
            return  # wait: worth more than the rows there are now
        req.looked_up = True
        try:
            if leader is not None and shared > self.prefix.longest_prefix(prompt):
                req.seq_id = self.batch.fork_sequence(leader.seq_id, shared)
                req.reused = shared
                self.prefix.lookups += 1
                self.prefix.hits += 1
                self.prefix.reused_tokens += shared
            else:
                req.seq_id, req.reused = self.prefix.take(prompt)
        except (ValueError, MemoryError):  # no copy to be had: compute the prompt
            req.seq_id, req.reused = None, 0
        if req.seq_id is None:
            req.seq_id = self.batch.open_sequence()
        if self.speculation is not None and self.speculation.proposer == "mtp" and req.reused:
            # the MTP module needs its cache over every position before the ones to feed
            # (batch_speculation.SequenceMtp): reuse no more than its copy holds
            kept = self.batch.mtp_length(req.seq_id)
            if kept < req.reused:
                self.batch.truncate_sequence(req.seq_id, kept)
                self.prefix.reused_tokens -= req.reused - kept
                req.reused = kept
        req.fed, req.cached = req.reused, prompt[:req.reused]
        self._speculate(req)

    def _speculate(self, req: Request) -> None:
        if self.speculation is not None:
            req.spec = RequestSpeculation(self.speculation, self.batch, req.seq_id, self.draft_batch)

    def _release(self, req: Request) -> None:
        """Free a finished (or cancelled) request's cache, or park it for prefix reuse."""
        if req.spec is not None:
            req.spec.close()
        if req.seq_id is not None:
            if self.prefix is not None and req.cache_ok:
                self.prefix.park(req.seq_id, req.cached)
            else:
                self.batch.close_sequence(req.seq_id)
            req.seq_id = None

    def _loop(self) -> None:
        while True:
            with self._wake:
                for req in [r for r in self._active if r.cancelled]:
                    self._release(req)
                    self._active.remove(req)
                self._admit()
                while not self._active and not self._stop:
                    self._wake.wait()
                    self._admit()
                if self._stop:
                    return
                batch = list(self._active)
            try:
                self._step(batch)
            except Exception as e:  # a bug, or memory: fail these requests, keep serving
                for req in batch:
                    req.cache_ok = False
                    req.notify("error", f"generation failed: {e}")
                    req.cancel()

    def _score(self, req: Request) -> bool:
        """Record a new request's prompt logprobs (echo); True when that is all it asked for
        (max_new_tokens 0): then it is done. The prompt is fed once more for generation."""
        seq = req.seq
        for start, rows in self.batch.prompt_logits(seq.prompt, PREFILL_CHUNK):
            seq.score(rows, start)
        req.scored = True
        if seq.max_new_tokens != 0:
            return False
        seq.advance(None)  # finishes: no tokens to generate
        self._finish(req)
        return True

    def _finish(self, req: Request) -> None:
        stats = dict(seconds=time.perf_counter() - req.t_start)
        if req.spec is not None:
            stats.update(req.spec.stats())
        last = req.seq.close(stats)
        if last:
            req.notify("pieces", last)
        req.notify("done", req.seq.generation)
        req.cancel()  # leaves at the next step

    def _step(self, batch: list[Request]) -> None:
        for req in batch:
            if req.seq_id is None:
                self._place(req)
        batch = [r for r in batch if r.seq_id is not None]  # the rest wait for a shared prefix
        batch = [r for r in batch if r.seq.prompt_logprobs is None or r.scored or not self._score(r)]
        if not batch:
            return
        segments, guesses = [], []
        for req in batch:
            props, forced = [], False
            if req.fed < len(req.seq.prompt):
                chunk = req.seq.prompt[req.fed:req.fed + PREFILL_CHUNK]
                req.fed += len(chunk)
            else:
                if req.spec is not None:
                    props, forced = req.spec.propose(req.seq, self._room(req))
                chunk = [req.seq.next_token] + props
            segments.append((req.seq_id, chunk, True) if props else (req.seq_id, chunk))
            guesses.append((props, forced))
        logits = self.batch.forward_batch(segments)
        hidden = self.batch.hidden() if any(r.spec and r.spec.wants_hidden for r in batch) else None
        for req, seg in zip(batch, segments):
            req.cached.extend(seg[1])
        self.steps += 1
        self.widest_batch = max(self.widest_batch, len(segments))
        self.positions += sum(len(seg[1]) for seg in segments)
        now = time.perf_counter()
        row0 = 0
        for req, seg, rows, (props, forced) in zip(batch, segments, logits, guesses):
            base, first = len(req.cached) - len(seg[1]), row0  # its cache before, its first row
            row0 += len(seg[1])
            if req.cancelled:
                continue
            if req.fed < len(req.seq.prompt):
                if hidden is not None and req.spec is not None:
                    req.spec.fed(hidden[first:row0], req.seq.history)
                continue  # more prompt to feed first
            if not props:
                self._advance(req, rows, now)
            else:
                self._verify(req, base, rows, props, forced, now)
            if req.seq.next_token is None:
                self._finish(req)
            elif hidden is not None and req.spec is not None:
                req.spec.fed(hidden[first:first + len(req.cached) - base], req.seq.history)

    def _room(self, req: Request) -> int:
        """Guesses a decoding request can verify now: within the context and max_new_tokens."""
        seq = req.seq
        room = self.batch.context - len(req.cached) - 1  # the cache holds history[:-1]
        if seq.max_new_tokens is not None:
            room = min(room, seq.max_new_tokens - len(seq.tokens))
        return room

    def _advance(self, req: Request, row, now: float) -> None:
        n = len(req.seq.tokens)
        pieces = req.seq.advance(row)
        if len(req.seq.tokens) > n:
            req.token_times.append(now)
        if pieces:
            req.notify("pieces", pieces)

    def _verify(self, req: Request, base: int, rows, props: list, forced: bool, now: float) -> None:
        """Advance through the rows of next_token and the guesses until the sequence chooses
        another token than the guess (its cache is rolled back past the rest) or finishes."""
        seq, accepted, n = req.seq, 0, len(req.seq.tokens)
        for i, row in enumerate(rows):
            self._advance(req, row, now)
            if seq.next_token is None or req.cancelled:
                break
            if i < len(props) and seq.next_token == props[i]:
                accepted += 1
                continue
            keep = base + 1 + i  # next_token and the accepted guesses
            self.batch.truncate_sequence(req.seq_id, keep)
            del req.cached[keep:]
            break
        req.spec.verified(len(props), accepted, len(seq.tokens) - n, forced)
        self.proposed += len(props)
        self.accepted += accepted
