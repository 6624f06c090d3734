"""`r1lite serve`'s log: one access line per request (client, method, path, status, prompt and
generated tokens, seconds), as llama.cpp's server and ollama write them, through the Python
logger "r1lite.access" (--log-level chooses what shows; --quiet is --log-level warning)."""

from __future__ import annotations

import logging
import sys
import time

LOGGER = "r1lite"
LEVELS = ("debug", "info", "warning", "error")


def configure(level: str) -> None:
    """r1lite's log lines to stderr at `level` (one of LEVELS)."""
    log = logging.getLogger(LOGGER)
    log.setLevel(level.upper())
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
    log.propagate = False


def count_tokens(request, prompt: int, generated: int) -> None:
    """Add one generation's tokens to what the access line of `request` reports."""
    if request is None:
        return
    state = request.scope.setdefault("state", {})
    state["r1lite_prompt_tokens"] = state.get("r1lite_prompt_tokens", 0) + prompt
    state["r1lite_generated_tokens"] = state.get("r1lite_generated_tokens", 0) + generated


class AccessLog:
    """ASGI middleware: logs each HTTP request once its response has ended (a stream's last
    event, or the client going away)."""

    def __init__(self, app):
        self.app = app
        self.log = logging.getLogger(LOGGER + ".access")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), 500

        async def watched_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            if self.log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                state = scope.get("state", {})
                tokens = ""
                if "r1lite_prompt_tokens" in state:
                    tokens = (f" prompt={state['r1lite_prompt_tokens']}"
                              f" generated={state['r1lite_generated_tokens']}")
                self.log.info(f'{client[0]}:{client[1]} "{scope["method"]} {scope["path"]}" '
                              f"{status}{tokens} {time.perf_counter() - t0:.3f}s")
