"""`r1lite serve`: an OpenAI-compatible HTTP server (Starlette + uvicorn, the `server` extra).

Endpoints: POST /v1/chat/completions, POST /v1/completions (stream or not), GET /v1/models,
GET /health, and GET / (the browser chat of webui.py, unless webui=False). Chat answers carry
R1's reasoning apart, as DeepSeek's API does: message.content is the answer,
message.reasoning_content the reasoning (delta.content / delta.reasoning_content when streamed).
Requests are decoded together by engine.Engine. Errors have OpenAI's shape:
{"error": {"message", "type", "param", "code"}} with 400 / 401 / 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time

from . import webui
from .engine import Engine, Request

TIMEOUT_POLL = 0.25  # seconds between checks that a waiting client is still connected


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
        return {"error": {"message": self.message, "type": kind.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}


# -- request fields ----------------------------------------------------------------------------

def _field(body: dict, name: str, kinds, check=None, what: str = ""):
    """body[name] if present and not null, checked; ApiError 400 naming it otherwise."""
    value = body.get(name)
    if value is None:
        return None
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in _tuple(kinds))
    if ok and check is not None:
        ok = check(value)
    if not ok:
        raise ApiError(400, f"'{name}' must be {what}, got {value!r}", param=name)
    return value


def _tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _number(body, name, low, high, what):
    return _field(body, name, (int, float), lambda v: math.isfinite(v) and low <= v <= high, what)


# request fields passed to generation as they are (after "seed", r1lite's extras;
# reasoning_effort is OpenAI's: low / medium / high thinking budgets, generate.EFFORT_BUDGETS)
GENERATION_FIELDS = ("temperature", "top_p", "seed", "top_k", "min_p", "repetition_penalty",
                     "max_thinking_tokens", "reasoning_effort", "thinking_margin", "loop_guard",
                     "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
                     "dry_sequence_breakers")
# A Generation's finish_reason as OpenAI clients know it; r1lite's own reason, where OpenAI has
# none ("repetition": the loop guard stopped a verbatim loop), goes in this extra choice field.
FINISH_DETAIL = "r1lite_finish_detail"


# Fields every request may carry that change nothing here (identifiers, storage hints).
ACCEPTED_FIELDS = ("model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens",
                   "stop", "user", "metadata", "store", "service_tier") + GENERATION_FIELDS
# OpenAI fields r1lite does not implement (yet), with the values that ask for nothing: a request
# with any other value gets a 400 naming the field, never a silently different answer.
UNIMPLEMENTED_DEFAULTS = {
    "logprobs": (None, False, 0), "top_logprobs": (None, 0), "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0), "logit_bias": (None, {}), "response_format": (None, {"type": "text"}),
    "tools": (None, []), "tool_choice": (None, "none", "auto"), "parallel_tool_calls": (None, True, False),
    "functions": (None, []), "function_call": (None, "none", "auto"), "echo": (None, False),
    "suffix": (None, ""), "best_of": (None, 1), "modalities": (None, ["text"]),
}


def _same(value, default) -> bool:
    """value is default: numbers by value (0 and 0.0 alike), booleans only as booleans."""
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and value == default
    return value == default


def _check_fields(body: dict, own: tuple) -> None:
    """ApiError 400 for a field this endpoint does not know, or an unimplemented one that asks
    for something (OpenAI's own servers refuse unknown arguments the same way)."""
    for name, value in body.items():
        if name in ACCEPTED_FIELDS or name in own:
            continue
        if name in UNIMPLEMENTED_DEFAULTS:
            if any(_same(value, d) for d in UNIMPLEMENTED_DEFAULTS[name]):
                continue
            raise ApiError(400, f"'{name}' is not supported by r1lite's server yet (got {value!r})",
                           param=name, code="unsupported_parameter")
        raise ApiError(400, f"unrecognized request field '{name}'", param=name, code="unknown_parameter")


def _generation_kw(body: dict) -> dict:
    """Generation keywords from an OpenAI request body (and r1lite's extras: top_k, min_p,
    repetition_penalty, max_thinking_tokens, thinking_margin, loop_guard, dry_*)."""
    n = _field(body, "n", int, lambda v: v >= 1, "an integer >= 1")
    if n is not None and n != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    max_tokens = _field(body, "max_completion_tokens", int, lambda v: v >= 1, "an integer >= 1")
    if max_tokens is None:
        max_tokens = _field(body, "max_tokens", int, lambda v: v >= 1, "an integer >= 1")
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if (not isinstance(stop, list) or not 1 <= len(stop) <= 4
                or not all(isinstance(s, str) and s for s in stop)):
            raise ApiError(400, "'stop' must be a non-empty string or a list of 1 to 4 of them",
                           param="stop")
    # OpenAI allows temperatures up to 2; every other value is checked where generation checks
    # it (sampling.SamplingParams, generate.Sequence), whose errors carry the field (.param).
    _number(body, "temperature", 0, 2, "a number in [0, 2]")
    kw = {name: body.get(name) for name in GENERATION_FIELDS}
    if kw["loop_guard"] is None:
        kw["loop_guard"] = True
    return dict(max_new_tokens=max_tokens, stop=stop, **kw)


def _finish(g) -> dict:
    """The choice's finish fields: "stop" or "length", plus FINISH_DETAIL when r1lite's reason
    is neither ("repetition" is sent as "stop")."""
    if g.finish_reason in ("stop", "length"):
        return {"finish_reason": g.finish_reason}
    return {"finish_reason": "stop", FINISH_DETAIL: g.finish_reason}


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
            raise ApiError(400, f"messages[{i}] needs a role of system, user or assistant",
                           param=f"messages[{i}].role")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported",
                               param=f"messages[{i}].content")
            content = "".join(p["text"] for p in content)
        if content is None and m["role"] == "assistant":
            content = ""
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{i}].content must be a string", param=f"messages[{i}].content")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": content})  # reasoning_content of past turns dropped
    return out


# -- the app -----------------------------------------------------------------------------------

class Server:
    def __init__(self, model, model_id: str, *, api_key: str | None = None, max_batch: int = 8,
                 webui: bool = True):
        self.model, self.model_id, self.api_key, self.webui = model, model_id, api_key, webui
        self.engine = Engine(model, max_batch=max_batch)
        self.created = int(time.time())

    def app(self):
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
        from starlette.routing import Route

        async def on_http_error(request, exc):
            return self._error(ApiError(exc.status_code, exc.detail or "error",
                                        code="not_found" if exc.status_code == 404 else None))

        @contextlib.asynccontextmanager
        async def lifespan(app):
            self.engine.start()
            try:
                yield
            finally:
                self.engine.stop()

        return Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                *(webui.routes() if self.webui else []),
            ],
            middleware=[Middleware(_KeyCheck, server=self)],
            exception_handlers={HTTPException: on_http_error},
            lifespan=lifespan,
        )

    @staticmethod
    def _error(err: ApiError):
        from starlette.responses import JSONResponse

        return JSONResponse(err.body(), status_code=err.status)

    async def health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", **self.engine.counts()})

    async def models(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"object": "list", "data": [
            {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "r1lite"}]})

    async def _body(self, request) -> dict:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.model_id:
            raise ApiError(404, f"model '{model}' does not exist; this server serves '{self.model_id}'",
                           param="model", code="model_not_found")
        if not isinstance(body.get("stream", False), bool):
            raise ApiError(400, "'stream' must be a boolean", param="stream")
        return body

    def _sequence(self, prompt, kw):
        try:
            return self.model.new_sequence(prompt, **kw)
        except ValueError as e:  # InvalidArgument names the generation keyword in .param
            field = getattr(e, "param", None)
            raise ApiError(400, str(e), param=field if field in GENERATION_FIELDS else None) from None

    @staticmethod
    def _prompt_error(e: ValueError) -> ApiError:
        return ApiError(400, str(e), code=getattr(e, "code", None))

    async def chat_completions(self, request):
        try:
            body = await self._body(request)
            _check_fields(body, ("messages",))
            kw = _generation_kw(body)
            messages = _messages(body)
            if self.model.tokenizer is None:
                raise ApiError(400, "this model has no tokenizer, so no chat template")
            try:
                prompt = self.model.chat_prompt(messages, kw["max_thinking_tokens"])
            except ValueError as e:
                raise self._prompt_error(e) from None
            seq = self._sequence(prompt, kw)
        except ApiError as e:
            return self._error(e)
        return await self._respond(request, body, seq, chat=True)

    async def completions(self, request):
        try:
            body = await self._body(request)
            _check_fields(body, ("prompt",))
            kw = _generation_kw(body)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if isinstance(prompt, str):
                if not prompt:
                    raise ApiError(400, "'prompt' is empty", param="prompt")
                if self.model.tokenizer is None:
                    raise ApiError(400, "this model has no tokenizer: send the prompt as token ids")
            elif not (isinstance(prompt, list) and prompt and all(
                    isinstance(t, int) and not isinstance(t, bool) for t in prompt)):
                raise ApiError(400, "'prompt' must be a string or a list of token ids", param="prompt")
            try:
                checked = self.model.text_prompt(prompt)
            except ValueError as e:
                raise self._prompt_error(e) from None
            seq = self._sequence(checked, kw)
        except ApiError as e:
            return self._error(e)
        return await self._respond(request, body, seq, chat=False)

    async def _events(self, request, seq):
        """(kind, payload) events of one generation; cancels it if the client goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        req = Request(seq, lambda kind, payload: loop.call_soon_threadsafe(queue.put_nowait, (kind, payload)))
        self.engine.submit(req)
        try:
            while True:
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), TIMEOUT_POLL)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                yield kind, payload
                if kind in ("done", "error"):
                    return
        finally:
            req.cancel()  # a no-op when finished; frees the slot when the client left

    async def _respond(self, request, body, seq, chat: bool):
        from starlette.responses import JSONResponse, StreamingResponse

        rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        created = int(time.time())
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            usage = isinstance(opts, dict) and opts.get("include_usage") is True
            return StreamingResponse(self._stream(request, seq, rid, created, chat, usage),
                                     media_type="text/event-stream")
        async for kind, payload in self._events(request, seq):
            if kind == "error":
                return JSONResponse({"error": {"message": payload, "type": "server_error",
                                               "param": None, "code": None}}, status_code=500)
            if kind == "done":
                g = payload
                choice = ({"index": 0, "message": {"role": "assistant", "content": g.answer,
                                                   "reasoning_content": g.reasoning or None},
                           **_finish(g), "logprobs": None} if chat else
                          {"index": 0, "text": g.text, **_finish(g), "logprobs": None})
                return JSONResponse({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                     "created": created, "model": self.model_id, "choices": [choice],
                                     "usage": _usage(g)})
        return JSONResponse({}, status_code=499)  # the client went away

    async def _stream(self, request, seq, rid, created, chat, include_usage):
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choice, **extra):
            data = {"id": rid, "object": obj, "created": created, "model": self.model_id,
                    "choices": [choice] if choice is not None else [], **extra}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        if chat:
            yield chunk({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        started = {"reasoning": False, "answer": False}  # leading whitespace is dropped, as in .answer
        sent_text = 0
        async for kind, payload in self._events(request, seq):
            if kind == "pieces":
                if not chat:  # raw text, think tags included: what .text holds
                    text = "".join(seq.texts)[sent_text:]
                    sent_text += len(text)
                    if text:
                        yield chunk({"index": 0, "text": text, "finish_reason": None, "logprobs": None})
                    continue
                for piece in payload:
                    text = piece.text if started[piece.kind] else piece.text.lstrip()
                    if not text:
                        continue
                    started[piece.kind] = True
                    field = "content" if piece.kind == "answer" else "reasoning_content"
                    yield chunk({"index": 0, "delta": {field: text}, "finish_reason": None})
            elif kind == "error":
                yield f"data: {json.dumps({'error': {'message': payload, 'type': 'server_error'}})}\n\n"
                return
            else:
                g = payload
                if not chat:
                    text = g.text[sent_text:]
                    yield chunk({"index": 0, "text": text, **_finish(g), "logprobs": None})
                else:
                    yield chunk({"index": 0, "delta": {}, **_finish(g)})
                if include_usage:
                    yield chunk(None, usage=_usage(g))
                yield "data: [DONE]\n\n"


def _usage(g) -> dict:
    p, c = g.stats["prompt_tokens"], g.stats["generated_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class _KeyCheck:
    """401 unless the request carries `Authorization: Bearer <key>` (when the server has a key);
    /health and the browser chat's page are open (the page asks for the key)."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        key = self.server.api_key
        public = webui.PUBLIC_PATHS if self.server.webui else ()
        path = scope.get("path")
        if scope["type"] == "http" and key and path != "/health" and path not in public:
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not secrets.compare_digest(given, f"Bearer {key}"):
                err = ApiError(401, "invalid or missing API key (Authorization: Bearer ...)",
                               code="invalid_api_key")
                await Server._error(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def check_server_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError("r1lite serve needs the server extra: pip install 'r1lite[server]' "
                          "(starlette, uvicorn)") from None


def listen_socket(host: str, port: int):
    """A socket bound to host:port (before the model loads, so that a port in use is named at
    once); OSError saying what to do when it cannot be."""
    import errno
    import socket

    check_server_extra()
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise OSError(f"cannot listen on {host}: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is in use (another server?); choose another "
                          "with --port") from None
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def serve(model, model_id: str, *, host: str = "127.0.0.1", port: int = 8080,
          api_key: str | None = None, max_batch: int = 8, webui: bool = True, sock=None) -> None:
    """Run the server until interrupted, on `sock` (from listen_socket) or host:port."""
    import uvicorn

    sock = sock or listen_socket(host, port)
    app = Server(model, model_id, api_key=api_key, max_batch=max_batch, webui=webui).app()
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: a normal end
        pass
