"""`r1lite serve`: an OpenAI-compatible HTTP server (Starlette + uvicorn, the `server` extra).

Endpoints: POST /v1/chat/completions, POST /v1/completions (stream or not), GET /v1/models,
GET /health, and GET / (the browser chat of webui.py, unless webui=False). Chat answers carry
R1's reasoning apart: message.content is the answer, the reasoning is in both
message.reasoning_content (DeepSeek's API) and message.reasoning (newer vLLM / OpenRouter
clients); deltas likewise. Requests are decoded together by engine.Engine; n > 1 choices and
batched prompts are separate requests of one batch. response_format constrains the answer
(constrain.py); tools / tool_choice are rendered, constrained and parsed by tools.py. Errors
have OpenAI's shape: {"error": {"message", "type", "param", "code"}} with 400 / 401 / 404.
Anthropic's Messages API (POST /v1/messages) is served from anthropic_api.py on the same engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time

from . import access_log, anthropic_api, constrain, metrics, tools, webui
from .api_fields import ApiError, check_fields
from .api_fields import field as _field
from .api_fields import number as _number
from .engine import DEFAULT_CACHE_RAM, Engine, Request
from .errors import InvalidArgument
from .logprobs import MAX_TOP
from .tokenizer import StreamDecoder

TIMEOUT_POLL = 0.25  # seconds between checks that a waiting client is still connected


# -- request fields ----------------------------------------------------------------------------

# request fields passed to generation as they are (after "seed", r1lite's extras;
# reasoning_effort is OpenAI's: low / medium / high thinking budgets, generate.EFFORT_BUDGETS)
GENERATION_FIELDS = ("temperature", "top_p", "seed", "top_k", "min_p", "repetition_penalty",
                     "max_thinking_tokens", "reasoning_effort", "thinking_margin", "loop_guard",
                     "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
                     "dry_sequence_breakers", "presence_penalty", "frequency_penalty", "logit_bias")
# A Generation's finish_reason as OpenAI clients know it; r1lite's own reason, where OpenAI has
# none ("repetition": the loop guard stopped a verbatim loop), goes in this extra choice field.
FINISH_DETAIL = "r1lite_finish_detail"


# Fields every request may carry that change nothing here (identifiers, storage hints).
ACCEPTED_FIELDS = ("model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens",
                   "stop", "user", "metadata", "store", "service_tier") + GENERATION_FIELDS
# OpenAI fields r1lite does not implement (yet), with the values that ask for nothing: a request
# with any other value gets a 400 naming the field, never a silently different answer.
UNIMPLEMENTED_DEFAULTS = {
    "functions": (None, []), "function_call": (None, "none", "auto"), "echo": (None, False),
    "suffix": (None, ""), "best_of": (None, 1), "modalities": (None, ["text"]),
}


def _check_fields(body: dict, own: tuple) -> None:
    """ApiError 400 for a field this endpoint does not know, or an unimplemented one that asks
    for something (OpenAI's own servers refuse unknown arguments the same way)."""
    check_fields(body, ACCEPTED_FIELDS + own, UNIMPLEMENTED_DEFAULTS)


def _generation_kw(body: dict, min_tokens: int = 1) -> dict:
    """Generation keywords from an OpenAI request body (and r1lite's extras: top_k, min_p,
    repetition_penalty, max_thinking_tokens, thinking_margin, loop_guard, dry_*).
    min_tokens: the least max_tokens allowed (0 for completions' echo)."""
    what = f"an integer >= {min_tokens}"
    max_tokens = _field(body, "max_completion_tokens", int, lambda v: v >= min_tokens, what)
    if max_tokens is None:
        max_tokens = _field(body, "max_tokens", int, lambda v: v >= min_tokens, what)
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


def _choice_count(body: dict, max_batch: int) -> int:
    """n: independent samples of the prompt, decoded in one batch, so at most max_batch."""
    n = _field(body, "n", int, lambda v: v >= 1, "an integer >= 1")
    if n is not None and n > max_batch:
        raise ApiError(400, f"n={n} is more than this server decodes at once (--max-batch "
                            f"{max_batch})", param="n")
    return n or 1


def _top_count(body: dict, name: str):
    return _field(body, name, int, lambda v: 0 <= v <= MAX_TOP, f"an integer in [0, {MAX_TOP}]")


def _chat_top(body: dict):
    """Alternatives per token for chat's logprobs (logprobs: true, top_logprobs: k), or None."""
    on = _field(body, "logprobs", bool, None, "a boolean")
    top = _top_count(body, "top_logprobs")
    if top is not None and not on:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    return (top or 0) if on else None


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
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer", "tool"):
            raise ApiError(400, f"messages[{i}] needs a role of system, user, assistant or tool",
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
        for name in ("reasoning_content", "reasoning"):  # past reasoning: checked, then dropped
            if m.get(name) is not None and not isinstance(m[name], str):
                raise ApiError(400, f"messages[{i}].{name} must be a string",
                               param=f"messages[{i}].{name}")
        try:
            calls = tools.message_calls(m, i)
        except InvalidArgument as e:
            raise ApiError(400, str(e), param=e.param) from None
        # past reasoning dropped, as R1's template drops it too
        out.append({"role": role, "content": content, **({"tool_calls": calls} if calls else {})})
    return out


# -- the app -----------------------------------------------------------------------------------

class Server:
    def __init__(self, model, model_id: str, *, api_key: str | None = None, max_batch: int = 8,
                 webui: bool = True, cache_ram: int = DEFAULT_CACHE_RAM, speculative=None):
        self.model, self.model_id, self.api_key, self.webui = model, model_id, api_key, webui
        self.engine = Engine(model, max_batch=max_batch, cache_ram=cache_ram, speculative=speculative)
        self.metrics = metrics.Metrics(self.engine)  # GET /metrics
        self.created = int(time.time())

    def app(self):
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.middleware import Middleware
        from starlette.routing import Route

        async def on_http_error(request, exc):
            err = ApiError(exc.status_code, exc.detail or "error",
                           code="not_found" if exc.status_code == 404 else None)
            return _error_response(request.url.path, err)

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
                Route("/metrics", self.metrics.endpoint, methods=["GET"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                *anthropic_api.routes(self),
                *(webui.routes() if self.webui else []),
            ],
            middleware=[Middleware(access_log.AccessLog),
                        Middleware(metrics.Meter, metrics=self.metrics),
                        Middleware(_KeyCheck, server=self)],
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
            named = field in GENERATION_FIELDS or field == "response_format"
            raise ApiError(400, str(e), param=field if named else None) from None

    async def _token_table(self, kw: dict) -> None:
        """Build the grammar engine's token table (once per model, ~1.5 s for 150K tokens) off
        the event loop, so that streams in flight go on meanwhile."""
        tok = self.model.tokenizer
        if kw.get("response_format") is not None and tok is not None:
            try:
                await asyncio.to_thread(constrain.token_table, tok, self.model.config["vocab_size"])
            except ValueError as e:  # a tokenizer without EOS
                raise ApiError(400, str(e), param="response_format") from None

    @staticmethod
    def _prompt_error(e: ValueError) -> ApiError:
        return ApiError(400, str(e), code=getattr(e, "code", None))

    async def chat_completions(self, request):
        try:
            body = await self._body(request)
            _check_fields(body, ("messages", "logprobs", "top_logprobs", "response_format", "tools",
                                 "tool_choice", "parallel_tool_calls"))
            kw = _generation_kw(body)
            n = _choice_count(body, self.engine.max_batch)
            kw["logprobs"] = _chat_top(body)
            messages = _messages(body)
            tok = self.model.tokenizer
            if tok is None:
                raise ApiError(400, "this model has no tokenizer, so no chat template")
            toolset = _tools(body)
            kw["response_format"] = _response_format(body)
            if toolset is not None and toolset.constrained:
                if kw["response_format"] is not None:
                    raise ApiError(400, "'response_format' cannot constrain an answer that "
                                        "tool_choice already constrains to a call", param="response_format")
                kw["response_format"] = _grammar(lambda: tools.grammar(toolset, tok), "tool_choice")
            await self._token_table(kw)
            messages, template_vars = tools.render(messages, tok, toolset)
            try:
                prompt = self.model.chat_prompt(messages, kw["max_thinking_tokens"], template_vars)
            except ValueError as e:
                raise self._prompt_error(e) from None
            calling = toolset is not None and toolset.choice != "none"
            choices = [_Choice(self._sequence(prompt, _seeded(kw, j)),
                               tools=_ChoiceTools(tools.style(tok), toolset.constrained) if calling else None)
                       for j in range(n)]
        except ApiError as e:
            return self._error(e)
        return await self._respond(request, body, choices, chat=True)

    async def completions(self, request):
        try:
            body = await self._body(request)
            _check_fields(body, ("prompt", "echo", "logprobs", "response_format"))
            echo = _field(body, "echo", bool, None, "a boolean") or False
            kw = _generation_kw(body, min_tokens=0 if echo else 1)
            kw["response_format"] = _response_format(body)
            await self._token_table(kw)
            n = _choice_count(body, self.engine.max_batch)
            top = _top_count(body, "logprobs")
            # echo with max_tokens 0 is a prompt scored, even when its logprobs are not asked for
            kw["logprobs"] = 0 if top is None and echo and kw["max_new_tokens"] == 0 else top
            kw["prompt_logprobs"] = echo and kw["logprobs"] is not None
            choices = []
            for i, (prompt, text) in enumerate(self._prompts(body.get("prompt"))):
                for j in range(n):
                    seq = self._sequence(prompt, _seeded(kw, j))
                    choices.append(_Choice(seq, i, echo=text if echo else None, logprobs=top is not None))
        except ApiError as e:
            return self._error(e)
        return await self._respond(request, body, choices, chat=False)

    def _prompts(self, prompt) -> list:
        """(checked Prompt, its text) for each prompt of a completions request: a string, a list
        of token ids, or a list of either (a batch)."""
        def is_ids(p):
            return isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
        if isinstance(prompt, str) or is_ids(prompt):
            prompt = [prompt]
        if not (isinstance(prompt, list) and prompt and all(isinstance(p, str) or is_ids(p) for p in prompt)):
            raise ApiError(400, "'prompt' must be a string, a list of token ids, or a non-empty list "
                                "of either", param="prompt")
        out = []
        for p in prompt:
            if isinstance(p, str):
                if not p:
                    raise ApiError(400, "'prompt' is empty", param="prompt")
                if self.model.tokenizer is None:
                    raise ApiError(400, "this model has no tokenizer: send the prompt as token ids",
                                   param="prompt")
            try:
                checked = self.model.text_prompt(p)
            except ValueError as e:
                raise self._prompt_error(e) from None
            text = p if isinstance(p, str) else (
                self.model.tokenizer.decode(p) if self.model.tokenizer is not None else "")
            out.append((checked, text))
        return out

    async def _events(self, request, seqs):
        """(choice index, kind, payload) events of the generations; cancels them if the client
        goes away, and all when one fails."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def sender(i):
            return lambda kind, payload: loop.call_soon_threadsafe(queue.put_nowait, (i, kind, payload))
        reqs = [Request(seq, sender(i)) for i, seq in enumerate(seqs)]
        for req in reqs:
            self.metrics.watch(req)
            self.engine.submit(req)
        left = len(reqs)
        try:
            while left:
                try:
                    i, kind, payload = await asyncio.wait_for(queue.get(), TIMEOUT_POLL)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                yield i, kind, payload
                if kind == "error":
                    return
                left -= kind == "done"
        finally:
            for req in reqs:
                req.cancel()  # a no-op when finished; frees the slot when the client left
                self.metrics.finished(req)
                access_log.count_tokens(request, len(req.seq.prompt), len(req.seq.tokens))

    async def _respond(self, request, body, choices, chat: bool):
        from starlette.responses import JSONResponse, StreamingResponse

        rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        created = int(time.time())
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            usage = isinstance(opts, dict) and opts.get("include_usage") is True
            return StreamingResponse(self._stream(request, choices, rid, created, chat, usage),
                                     media_type="text/event-stream")
        done = {}
        async for i, kind, payload in self._events(request, [c.seq for c in choices]):
            if kind == "error":
                return JSONResponse({"error": {"message": payload, "type": "server_error",
                                               "param": None, "code": None}}, status_code=500)
            if kind == "done":
                done[i] = payload
        if len(done) < len(choices):
            return JSONResponse({}, status_code=499)  # the client went away
        out = [self._chat_choice(i, c, done[i]) if chat else self._text_choice(i, c, done[i])
               for i, c in enumerate(choices)]
        return JSONResponse({"id": rid, "object": "chat.completion" if chat else "text_completion",
                             "created": created, "model": self.model_id, "choices": out,
                             "usage": _usage(choices, [done[i] for i in range(len(choices))])})

    # -- choices and their logprobs ------------------------------------------------------------

    def _token(self, t: int) -> tuple[str, list | None]:
        """A token's text (U+FFFD for part of a UTF-8 character) and its bytes; "token_id:N"
        (bytes null) for a model without a tokenizer."""
        tok = self.model.tokenizer
        if tok is None:
            return f"token_id:{t}", None
        raw = tok.token_bytes(t)
        return raw.decode("utf-8", "replace"), list(raw)

    def _chat_logprobs(self, entries) -> list:
        """OpenAI's choices[].logprobs.content entries."""
        def item(t, lp):
            text, raw = self._token(t)
            return {"token": text, "logprob": _finite(lp), "bytes": raw}
        return [{**item(e.token, e.logprob), "top_logprobs": [item(t, lp) for t, lp in e.top]}
                for e in entries]

    def _text_logprobs(self, ids, entries, offsets) -> dict:
        """The completions API's (legacy) logprobs: entries[i] is ids[i]'s (None: no logprob)."""
        return {"tokens": [self._token(t)[0] for t in ids],
                "token_logprobs": [None if e is None else _finite(e.logprob) for e in entries],
                "top_logprobs": [None if e is None else {self._token(t)[0]: _finite(lp) for t, lp in e.top}
                                 for e in entries],
                "text_offset": offsets}

    def _chat_choice(self, i, c, g) -> dict:
        reasoning = g.reasoning or None
        content, calls = tools.parse(g.answer, c.tools.style) if c.tools else (g.answer, [])
        message = {"role": "assistant", "content": content or (None if calls else ""),
                   "reasoning_content": reasoning, "reasoning": reasoning}
        if calls:
            message["tool_calls"] = calls
        return {"index": i, "message": message,
                **({"finish_reason": "tool_calls"} if calls else _finish(g)),
                "logprobs": None if g.logprobs is None else {"content": self._chat_logprobs(g.logprobs)}}

    def _text_choice(self, i, c, g) -> dict:
        echo = c.echo or ""
        logprobs = None
        if c.logprobs:
            ids, entries, offsets = [], [], []
            if c.echo is not None:
                ids, entries, offsets = list(c.seq.prompt), list(g.prompt_logprobs), c.prompt_offsets(self)
            ids += g.tokens
            entries += g.logprobs
            offsets += c.offsets(self, g.tokens, len(echo))
            logprobs = self._text_logprobs(ids, entries, offsets)
        return {"index": i, "text": echo + g.text, **_finish(g), "logprobs": logprobs}

    async def _stream(self, request, choices, rid, created, chat, include_usage):
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choice, **extra):
            data = {"id": rid, "object": obj, "created": created, "model": self.model_id,
                    "choices": [choice] if choice is not None else [], **extra}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        if chat:
            for i in range(len(choices)):
                yield chunk({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None})
        done = {}
        async for i, kind, payload in self._events(request, [c.seq for c in choices]):
            c = choices[i]
            if kind == "error":
                yield f"data: {json.dumps({'error': {'message': payload, 'type': 'server_error'}})}\n\n"
                return
            if not chat and c.echo is not None and not c.echoed:  # the prompt first (scored by now)
                c.echoed = True
                logprobs = (self._text_logprobs(c.seq.prompt, c.seq.prompt_logprobs, c.prompt_offsets(self))
                            if c.logprobs else None)
                yield chunk({"index": i, "text": c.echo, "finish_reason": None, "logprobs": logprobs})
            if kind == "pieces":
                c.untold += sum(len(p.tokens) for p in payload)
                if not chat:  # raw text, think tags included: what .text holds (one part per token)
                    text = "".join(c.seq.texts[:c.sent_tokens + c.untold])[c.sent_text:]
                    c.sent_text += len(text)
                    if text:
                        yield chunk({"index": i, "text": text, "finish_reason": None,
                                     "logprobs": self._stream_text_logprobs(c)})
                    continue
                for piece in payload:
                    text = piece.text if c.started[piece.kind] else piece.text.lstrip()
                    if c.tools is not None and piece.kind == "answer":
                        text = c.tools.content(text)  # held back once a call may have begun
                    if not text:
                        continue
                    c.started[piece.kind] = True
                    delta = {"content": text} if piece.kind == "answer" else {
                        "reasoning_content": text, "reasoning": text}
                    yield chunk({"index": i, "delta": delta, "finish_reason": None,
                                 "logprobs": self._stream_chat_logprobs(c)})
                continue
            g = done[i] = payload
            if not chat:
                c.untold = len(g.tokens) - c.sent_tokens
                yield chunk({"index": i, "text": g.text[c.sent_text:], **_finish(g),
                             "logprobs": self._stream_text_logprobs(c)})
            elif c.tools is not None:  # the calls, parsed now that the answer is whole
                content, calls = tools.parse(g.answer, c.tools.style)
                rest = c.tools.rest()
                deltas = [{"tool_calls": [{"index": k, **call}]} for k, call in enumerate(calls)]
                if not calls and rest:
                    deltas = [{"content": rest}]
                for delta in deltas:
                    yield chunk({"index": i, "delta": delta, "finish_reason": None, "logprobs": None})
                yield chunk({"index": i, "delta": {}, **({"finish_reason": "tool_calls"} if calls
                                                         else _finish(g)),
                             "logprobs": self._stream_chat_logprobs(c)})
            else:
                yield chunk({"index": i, "delta": {}, **_finish(g), "logprobs": self._stream_chat_logprobs(c)})
        if len(done) < len(choices):
            return  # the client went away
        if include_usage:
            yield chunk(None, usage=_usage(choices, [done[i] for i in range(len(choices))]))
        yield "data: [DONE]\n\n"

    def _told(self, c) -> list:
        """The logprob entries of a streamed choice's tokens told since the last chunk."""
        entries = c.seq.logprobs[c.sent_tokens:c.sent_tokens + c.untold]
        c.sent_tokens += c.untold
        c.untold = 0
        return entries

    def _stream_chat_logprobs(self, c):
        if c.seq.logprobs is None:
            return None
        return {"content": self._chat_logprobs(self._told(c))}

    def _stream_text_logprobs(self, c):
        if not c.logprobs:
            return None
        start = c.sent_tokens
        entries = self._told(c)
        ids = c.seq.tokens[start:start + len(entries)]
        return self._text_logprobs(ids, entries, c.offsets(self, ids, len(c.echo or "")))


class _Choice:
    """One choice of a response: its sequence, which prompt it samples (usage counts each prompt
    once), the echoed prompt text (completions' echo), and what streaming has sent of it."""

    def __init__(self, seq, prompt_index: int = 0, echo: str | None = None, logprobs: bool = True,
                 tools=None):
        self.seq, self.prompt_index, self.echo, self.logprobs = seq, prompt_index, echo, logprobs
        self.tools = tools  # a _ChoiceTools when the model may call tools
        self.started = {"reasoning": False, "answer": False}  # leading whitespace is dropped, as in .answer
        self.sent_text = self.sent_tokens = self.untold = 0
        self.echoed = False
        self._decoder, self._emitted = None, 0

    def offsets(self, server, ids, base: int) -> list:
        """text_offset of the generated tokens ids (continuing the earlier calls): where each
        token's text starts in the choice's text (after base characters of echo)."""
        if server.model.tokenizer is None:
            return [base] * len(ids)
        if self._decoder is None:
            self._decoder = StreamDecoder(server.model.tokenizer)
        out = []
        for t in ids:
            out.append(base + self._emitted)
            self._emitted += len(self._decoder.push(t))
        return out

    def prompt_offsets(self, server) -> list:
        """text_offset of the prompt's tokens in the echoed text, aligned at its end (a BOS the
        tokenizer added to a string prompt starts at 0 and takes no room)."""
        tok = server.model.tokenizer
        if tok is None:
            return [0] * len(self.seq.prompt)
        decoder, out, emitted = StreamDecoder(tok), [], 0
        for t in self.seq.prompt:
            out.append(emitted)
            emitted += len(decoder.push(t))
        emitted += len(decoder.flush())
        shift = emitted - len(self.echo or "")
        return [max(0, o - shift) for o in out]


class _ChoiceTools:
    """A streamed choice's answer text while the model may call tools: content goes out until
    the call syntax begins (text that may begin it is held back); constrained: never."""

    def __init__(self, style: str, constrained: bool):
        self.style, self.calling, self.held = style, constrained, ""

    def content(self, text: str) -> str:
        if self.calling:
            return ""
        s = self.held + text
        start = s.find(tools.START[self.style])
        if start >= 0:
            self.calling, self.held = True, ""
            return s[:start]
        keep = tools.held_back(s, self.style)
        self.held = s[len(s) - keep:]
        return s[:len(s) - keep]

    def rest(self) -> str:
        """What was held back, once the answer ended without a call."""
        rest, self.held = ("" if self.calling else self.held), ""
        return rest


def _grammar(make, param: str):
    """make() -> a constrain.Grammar, with its errors (and a missing llguidance) as 400s."""
    try:
        return make()
    except ImportError as e:
        raise ApiError(400, str(e), param=param) from None
    except InvalidArgument as e:
        raise ApiError(400, str(e), param=param if e.param in (None, "schema") else e.param) from None


def _response_format(body: dict):
    """The grammar body's response_format asks for, or None."""
    value = body.get("response_format")
    if value is None:
        return None
    return _grammar(lambda: constrain.from_response_format(value, "response_format"), "response_format")


def _tools(body: dict):
    """The request's tools and tool_choice (a tools.ToolChoice), or None."""
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise ApiError(400, "'parallel_tool_calls' must be a boolean", param="parallel_tool_calls")
    return _grammar(lambda: tools.check(body.get("tools"), body.get("tool_choice")), "tools")


def _seeded(kw: dict, j: int) -> dict:
    """Choice j's keywords: seed + j, so that n choices differ yet reproduce."""
    seed = kw.get("seed")
    if j and isinstance(seed, int) and not isinstance(seed, bool):
        return {**kw, "seed": seed + j}
    return kw


def _finite(lp: float) -> float:
    return max(lp, -9999.0)  # JSON has no -inf; OpenAI reports -9999 for impossible tokens


def _usage(choices, generations) -> dict:
    """Each prompt counted once (n choices of one prompt share it), every choice's tokens."""
    prompts = {c.prompt_index: g.stats["prompt_tokens"] for c, g in zip(choices, generations)}
    p = sum(prompts.values())
    c = sum(g.stats["generated_tokens"] for g in generations)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _error_response(path: str, err: ApiError):
    """err in the shape of the API the path belongs to (OpenAI's or Anthropic's)."""
    return anthropic_api.error_response(err) if anthropic_api.owns(path) else Server._error(err)


class _KeyCheck:
    """401 unless the request carries `Authorization: Bearer <key>` or `x-api-key: <key>`
    (Anthropic's header) when the server has a key; /health and the browser chat's page are open
    (the page asks for the key)."""

    def __init__(self, app, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope, receive, send):
        key = self.server.api_key
        public = webui.PUBLIC_PATHS if self.server.webui else ()
        path = scope.get("path")
        if scope["type"] == "http" and key and path != "/health" and path not in public:
            headers = dict(scope["headers"])
            bearer = headers.get(b"authorization", b"")
            x_api_key = headers.get(b"x-api-key", b"")
            if not (secrets.compare_digest(bearer, b"Bearer " + key.encode())
                    or secrets.compare_digest(x_api_key, key.encode())):
                err = ApiError(401, "invalid or missing API key (Authorization: Bearer ... or "
                               "x-api-key)", code="invalid_api_key")
                await _error_response(path, err)(scope, receive, send)
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
          api_key: str | None = None, max_batch: int = 8, webui: bool = True, sock=None,
          log_level: str = "info", cache_ram: int = DEFAULT_CACHE_RAM, speculative=None) -> None:
    """Run the server until interrupted, on `sock` (from listen_socket) or host:port; log_level
    (access_log.LEVELS) "info" logs a line per request, "warning" only problems; speculative:
    None, "ngram", "mtp" or {"proposer", "k", "n", "draft"} (engine.Engine)."""
    import uvicorn

    if log_level not in access_log.LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(access_log.LEVELS)}, got {log_level!r}")
    sock = sock or listen_socket(host, port)
    access_log.configure(log_level)
    app = Server(model, model_id, api_key=api_key, max_batch=max_batch, webui=webui,
                 cache_ram=cache_ram, speculative=speculative).app()
    try:
        # uvicorn's own access log is off: ours has the tokens and the time of each request
        uvicorn.Server(uvicorn.Config(app, log_level=max(log_level, "warning", key=access_log.LEVELS.index),
                                      access_log=False)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: a normal end
        pass
