"""GET /metrics: the server's counters, histograms and gauges in Prometheus' text format, kept by
prometheus_client (the `server` extra) in a registry of each Server's own, not the process-wide one.

  r1lite_requests_total{endpoint, status}    HTTP requests answered (endpoint: the route's path,
                                             "other" for unknown paths)
  r1lite_request_duration_seconds{endpoint}  from the request to the end of its response
  r1lite_prompt_tokens_total                 prompt tokens fed to the model
  r1lite_generated_tokens_total              tokens generated (reasoning and answer)
  r1lite_time_to_first_token_seconds         from a generation's submission to its first token
  r1lite_inter_token_latency_seconds         between consecutive tokens of a generation
  r1lite_sequences_running / _waiting        sequences in the engine's batch / queued for it
  r1lite_prefix_cache_lookups_total          requests whose prompt was looked up among the
                                             parked caches (prefix_cache.py)
  r1lite_prefix_cache_hits_total             ... that reused a parked cache (hit rate: hits /
                                             lookups)
  r1lite_prefix_cache_reused_tokens_total    prompt tokens whose cache rows were reused
  r1lite_prefix_cache_bytes                  memory the parked caches hold
  r1lite_speculative_proposed_tokens_total   guessed tokens verified (serve --spec; acceptance
  r1lite_speculative_accepted_tokens_total   ... and kept                rate: accepted / proposed)

Without prometheus_client the server runs as before and /metrics answers 501 saying so.
"""

from __future__ import annotations

import threading
import time

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self, engine):
        try:
            import prometheus_client as pc
        except ImportError:
            self.registry = None
            return
        self.registry = r = pc.CollectorRegistry()
        self._lock = threading.Lock()  # a request ends in the engine thread or the event loop
        self.requests = pc.Counter("r1lite_requests", "HTTP requests answered, by endpoint and status",
                                   ["endpoint", "status"], registry=r)
        self.duration = pc.Histogram("r1lite_request_duration_seconds",
                                     "Time from a request to the end of its response", ["endpoint"],
                                     buckets=DURATION_BUCKETS, registry=r)
        self.prompt_tokens = pc.Counter("r1lite_prompt_tokens", "Prompt tokens fed to the model",
                                        registry=r)
        self.lookups = pc.Counter("r1lite_prefix_cache_lookups", "Prompts looked up in the prefix cache",
                                  registry=r)
        self.hits = pc.Counter("r1lite_prefix_cache_hits", "Prompts that reused a parked cache",
                               registry=r)
        self.reused_tokens = pc.Counter("r1lite_prefix_cache_reused_tokens",
                                        "Prompt tokens whose cache rows were reused", registry=r)
        parked = pc.Gauge("r1lite_prefix_cache_bytes", "Memory the parked caches hold", registry=r)
        parked.set_function(lambda: engine.prefix.bytes if engine.prefix is not None else 0)
        self.generated_tokens = pc.Counter("r1lite_generated_tokens", "Tokens generated", registry=r)
        self.proposed = pc.Counter("r1lite_speculative_proposed_tokens",
                                   "Speculated tokens verified", registry=r)
        self.accepted = pc.Counter("r1lite_speculative_accepted_tokens",
                                   "Speculated tokens the model agreed with", registry=r)
        self.ttft = pc.Histogram("r1lite_time_to_first_token_seconds",
                                 "Time from a generation's submission to its first token",
                                 buckets=TTFT_BUCKETS, registry=r)
        self.itl = pc.Histogram("r1lite_inter_token_latency_seconds",
                                "Time between consecutive tokens of a generation",
                                buckets=ITL_BUCKETS, registry=r)
        running = pc.Gauge("r1lite_sequences_running", "Sequences in the engine's batch", registry=r)
        running.set_function(lambda: engine.counts()["active"])
        waiting = pc.Gauge("r1lite_sequences_waiting", "Sequences queued for the engine", registry=r)
        waiting.set_function(lambda: engine.counts()["waiting"])

    def watch(self, req) -> None:
        """Meter an engine Request when it ends: its done or error event first updates the
        metrics (in the engine thread, so before a client can see the answer)."""
        notify = req.on_event

        def on_event(kind, payload):
            if kind in ("done", "error"):
                self.finished(req)
            notify(kind, payload)

        req.on_event = on_event

    def finished(self, req) -> None:
        """Count a request's tokens and timings, once (also for one whose client went away)."""
        if self.registry is None:
            return
        with self._lock:
            if getattr(req, "metered", False):
                return
            req.metered = True
        times = list(req.token_times)
        self.prompt_tokens.inc(req.fed - req.reused)
        self.lookups.inc(req.looked_up)
        self.hits.inc(req.reused > 0)
        self.reused_tokens.inc(req.reused)
        self.generated_tokens.inc(len(req.seq.tokens))
        if req.spec is not None:
            self.proposed.inc(req.spec.proposed)
            self.accepted.inc(req.spec.accepted)
        if times:
            self.ttft.observe(times[0] - req.t_start)
        for a, b in zip(times, times[1:]):
            self.itl.observe(b - a)

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        if self.registry is not None:
            self.requests.labels(endpoint, str(status)).inc()
            self.duration.labels(endpoint).observe(seconds)

    async def endpoint(self, request):
        from starlette.responses import JSONResponse, Response

        if self.registry is None:
            return JSONResponse({"error": {
                "message": "GET /metrics needs prometheus_client: pip install prometheus_client "
                           "(part of r1lite's server extra)", "type": "not_implemented",
                "param": None, "code": None}}, status_code=501)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class Meter:
    """ASGI middleware: each HTTP request's status and duration into Metrics.answered, when its
    response ends (a stream's last event included)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.paths: set | None = None  # the app's route paths, read on the first request

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.metrics.registry is None:
            await self.app(scope, receive, send)
            return
        if self.paths is None:
            self.paths = {getattr(r, "path", None) for r in getattr(scope.get("app"), "routes", [])}
        endpoint = scope["path"] if scope["path"] in self.paths else "other"
        t0 = time.perf_counter()
        status, done = 500, False

        async def metered_send(message):
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                done = True  # counted before the last bytes leave, so a client's next look sees it
                self.metrics.answered(endpoint, status, time.perf_counter() - t0)
            await send(message)

        try:
            await self.app(scope, receive, metered_send)
        finally:
            if not done:  # an exception (500), or a stream whose client went away
                self.metrics.answered(endpoint, status, time.perf_counter() - t0)
