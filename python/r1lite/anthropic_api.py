"""Anthropic's Messages API on the server's app and engine: POST /v1/messages (plain or streamed)
and POST /v1/messages/count_tokens, for Claude-compatible clients (the official `anthropic`).

R1's reasoning comes back as a `thinking` content block (signature "") and the answer as a `text`
block. `thinking: {type: "enabled", budget_tokens: N}` is r1lite's thinking budget (any N >= 1,
below max_tokens), `{type: "disabled"}` skips the reasoning, `{type: "adaptive"}` or no `thinking`
lets the model think as it does by default; `output_config.effort` low / medium / high is
reasoning_effort's budget. Errors have Anthropic's shape: {"type": "error", "error": {"type",
"message"}}, the message naming the field at fault.
"""

from __future__ import annotations

import json
import secrets

from .api_fields import ApiError, check_fields, field, number

PREFIX = "/v1/messages"
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}
# r1lite's sampling extras, accepted here as on the OpenAI endpoints
EXTRAS = ("seed", "min_p", "repetition_penalty", "thinking_margin", "loop_guard", "dry_multiplier",
          "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers")
# hints that change no answer: metadata, service_tier, cache_control (prompt caching)
HINTS = ("metadata", "service_tier", "cache_control")
MESSAGE_FIELDS = ("model", "messages", "max_tokens", "system", "stop_sequences", "temperature",
                  "top_p", "top_k", "stream", "thinking", "output_config") + HINTS + EXTRAS
COUNT_FIELDS = ("model", "messages", "system", "thinking", "output_config", "cache_control")
# Anthropic fields r1lite does not implement, with the values that ask for nothing
UNIMPLEMENTED_DEFAULTS = {
    "tools": (None, []), "tool_choice": (None, {"type": "none"}, {"type": "auto"}),
    "mcp_servers": (None, []), "container": (None,), "context_management": (None,),
    "inference_geo": (None,), "speed": (None, "standard"),
}
# effort -> reasoning_effort (generate.EFFORT_BUDGETS); "xhigh" and "max": no budget
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": None, "max": None}
# where r1lite's name for a value differs from Anthropic's
FIELD_NAMES = {"max_new_tokens": "max_tokens", "stop": "stop_sequences",
               "max_thinking_tokens": "thinking.budget_tokens", "reasoning_effort": "output_config.effort"}
STOP_DETAIL = "r1lite_stop_detail"  # "repetition" when the loop guard ended the answer


def owns(path: str) -> bool:
    """Whether errors on this path are answered in Anthropic's shape."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_response(err: ApiError):
    from starlette.responses import JSONResponse

    return JSONResponse(_error_body(err.status, err.message), status_code=err.status)


def _error_body(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def routes(server) -> list:
    from starlette.routing import Route

    async def on_messages(request):
        return await messages(server, request)

    async def on_count_tokens(request):
        return await count_tokens(server, request)

    return [Route(PREFIX, on_messages, methods=["POST"]),
            Route(PREFIX + "/count_tokens", on_count_tokens, methods=["POST"])]


# -- the request -------------------------------------------------------------------------------

def _keys(obj: dict, allowed: tuple, where: str) -> None:
    for name in obj:
        if name not in allowed:
            raise ApiError(400, f"{where}.{name}: unrecognized field")


def _text(content, where: str, thinking_ok: bool) -> str:
    """A message's (or the system prompt's) text: a string or text blocks; earlier thinking
    blocks (thinking_ok: an assistant turn) are dropped, as the R1 template drops reasoning."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"{where} must be a string or a list of content blocks")
    texts = []
    for j, block in enumerate(content):
        at = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            _keys(block, ("type", "text", "cache_control", "citations"), at)
            if not isinstance(block.get("text"), str):
                raise ApiError(400, f"{at}.text must be a string")
            texts.append(block["text"])
        elif kind in ("thinking", "redacted_thinking") and thinking_ok:
            continue
        elif isinstance(kind, str):
            raise ApiError(400, f"{at}: content blocks of type '{kind}' are not supported by r1lite "
                                f"(text only)")
        else:
            raise ApiError(400, f"{at} must be a content block with a 'type'")
    return "".join(texts)


def _messages(body: dict) -> list[dict]:
    """The conversation as r1lite's [{"role", "content"}], the system prompt first."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: must be a non-empty list")
    out = []
    system = body.get("system")
    if system is not None:
        text = _text(system, "system", thinking_ok=False)
        if text:
            out.append({"role": "system", "content": text})
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise ApiError(400, f"{where}.role must be 'user' or 'assistant' (the system prompt "
                                f"goes in 'system')")
        _keys(m, ("role", "content"), where)
        if "content" not in m:
            raise ApiError(400, f"{where}.content: field required")
        out.append({"role": m["role"], "content": _text(m["content"], f"{where}.content",
                                                        thinking_ok=m["role"] == "assistant")})
    if out[-1]["role"] == "assistant":
        raise ApiError(400, f"messages[{len(messages) - 1}]: continuing a final assistant message "
                            f"(prefill) is not supported by r1lite; end with a user message")
    return out


def _thinking(body: dict, max_tokens: int | None) -> tuple[int | None, str | None, bool]:
    """(max_thinking_tokens, reasoning_effort, hide the thinking text) from thinking and
    output_config."""
    budget, effort, hide = None, None, False
    config = field(body, "output_config", dict, what="an object")
    if config is not None:
        _keys(config, ("effort", "format"), "output_config")
        if config.get("format") is not None:
            raise ApiError(400, "output_config.format: structured output is not supported by "
                                "r1lite's server yet")
        if config.get("effort") is not None:
            if config["effort"] not in EFFORTS:
                raise ApiError(400, f"output_config.effort must be one of {', '.join(EFFORTS)}, "
                                    f"got {config['effort']!r}")
            effort = EFFORTS[config["effort"]]
    t = field(body, "thinking", dict, what="an object")
    if t is None:
        return budget, effort, hide
    kind = t.get("type")
    if kind == "enabled":
        _keys(t, ("type", "budget_tokens", "display"), "thinking")
        budget = t.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ApiError(400, f"thinking.budget_tokens must be an integer >= 1, got {budget!r}")
        if max_tokens is not None and budget >= max_tokens:
            raise ApiError(400, f"thinking.budget_tokens ({budget}) must be less than max_tokens "
                                f"({max_tokens}): thinking counts toward max_tokens")
    elif kind == "disabled":
        _keys(t, ("type",), "thinking")
        budget = 0
    elif kind == "adaptive":  # the model decides: r1lite's default
        _keys(t, ("type", "display"), "thinking")
    else:
        raise ApiError(400, f"thinking.type must be 'enabled', 'disabled' or 'adaptive', got {kind!r}")
    display = t.get("display")
    if display not in (None, "summarized", "omitted"):
        raise ApiError(400, f"thinking.display must be 'summarized' or 'omitted', got {display!r}")
    return budget, effort, display == "omitted"


def _generation_kw(body: dict) -> dict:
    max_tokens = field(body, "max_tokens", int, lambda v: v >= 1, "an integer >= 1")
    if max_tokens is None:
        raise ApiError(400, "max_tokens: field required")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list)
                              or not all(isinstance(s, str) and s for s in stops)):
        raise ApiError(400, "'stop_sequences' must be a list of non-empty strings")
    number(body, "temperature", 0, 1, "a number in [0, 1]")
    number(body, "top_p", 0, 1, "a number in [0, 1]")
    field(body, "top_k", int, lambda v: v >= 0, "an integer >= 0")
    field(body, "metadata", dict, what="an object")
    budget, effort, _ = _thinking(body, max_tokens)
    kw = {name: body.get(name) for name in ("temperature", "top_p", "top_k") + EXTRAS}
    if kw["loop_guard"] is None:
        kw["loop_guard"] = True
    return dict(max_new_tokens=max_tokens, stop=stops or None, max_thinking_tokens=budget,
                reasoning_effort=effort, **kw)


async def _parse(server, request, fields: tuple) -> dict:
    body = await server._body(request)  # JSON object, the model served, a boolean stream
    if "model" not in body:
        raise ApiError(400, "model: field required")
    check_fields(body, fields, UNIMPLEMENTED_DEFAULTS)
    if server.model.tokenizer is None:
        raise ApiError(400, "this model has no tokenizer, so no chat template")
    return body


def _prompt(server, messages, max_thinking_tokens):
    try:
        return server.model.chat_prompt(messages, max_thinking_tokens)
    except ValueError as e:  # the conversation does not fit the context, or the template refuses
        raise ApiError(400, f"messages: {e}") from None


# -- the endpoints -----------------------------------------------------------------------------

async def count_tokens(server, request):
    try:
        body = await _parse(server, request, COUNT_FIELDS)
        budget, _, _ = _thinking(body, None)
        prompt = _prompt(server, _messages(body), budget)
    except ApiError as e:
        return error_response(e)
    from starlette.responses import JSONResponse

    return JSONResponse({"input_tokens": len(prompt.ids)})


async def messages(server, request):
    from starlette.responses import JSONResponse, StreamingResponse

    try:
        body = await _parse(server, request, MESSAGE_FIELDS)
        kw = _generation_kw(body)
        hide = _thinking(body, kw["max_new_tokens"])[2]
        prompt = _prompt(server, _messages(body), kw["max_thinking_tokens"])
        try:
            seq = server.model.new_sequence(prompt, **kw)
        except ValueError as e:  # InvalidArgument names r1lite's keyword in .param
            name = getattr(e, "param", None)
            raise ApiError(400, f"{FIELD_NAMES[name]}: {e}" if name in FIELD_NAMES else str(e)) from None
    except ApiError as e:
        return error_response(e)
    mid = "msg_" + secrets.token_hex(12)
    if body.get("stream"):
        return StreamingResponse(_stream(server, request, seq, mid, hide),
                                 media_type="text/event-stream")
    async for _, kind, payload in server._events(request, [seq]):
        if kind == "error":
            return JSONResponse(_error_body(500, payload), status_code=500)
        if kind == "done":
            g = payload
            content = []
            if g.reasoning:
                content.append({"type": "thinking", "thinking": "" if hide else g.reasoning,
                                "signature": ""})
            if g.answer:
                content.append({"type": "text", "text": g.answer})
            return JSONResponse({**_message(server, mid, seq, content), **_stop(seq, g),
                                 "usage": _usage(seq)})
    return JSONResponse({}, status_code=499)  # the client went away


def _message(server, mid: str, seq, content: list) -> dict:
    return {"id": mid, "type": "message", "role": "assistant", "model": server.model_id,
            "content": content}


def _stop(seq, g) -> dict:
    """stop_reason and stop_sequence (plus STOP_DETAIL where r1lite's reason is its own)."""
    if g.finish_reason == "stop" and seq.hit_stop_string:
        return {"stop_reason": "stop_sequence", "stop_sequence": seq.stops.matched}
    if g.finish_reason == "length":
        full = seq.max_new_tokens is not None and len(g.tokens) >= seq.max_new_tokens
        return {"stop_reason": "max_tokens" if full else "model_context_window_exceeded",
                "stop_sequence": None}
    extra = {STOP_DETAIL: g.finish_reason} if g.finish_reason != "stop" else {}
    return {"stop_reason": "end_turn", "stop_sequence": None, **extra}


def _usage(seq) -> dict:
    return {"input_tokens": len(seq.prompt), "output_tokens": len(seq.tokens),
            "output_tokens_details": {"thinking_tokens": seq.n_reasoning}}


def _event(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, ensure_ascii=False)}\n\n"


async def _stream(server, request, seq, mid: str, hide: bool):
    """The SSE events of one message: message_start, a block per part (thinking, then text:
    content_block_start, deltas, content_block_stop), message_delta, message_stop. Each block's
    text is stripped at both ends, as in the unstreamed message."""
    start = {**_message(server, mid, seq, []), "stop_reason": None, "stop_sequence": None,
             "usage": {"input_tokens": len(seq.prompt), "output_tokens": 0}}
    yield _event("message_start", {"message": start})
    yield _event("ping", {})
    index, open_kind, pending = -1, None, ""  # pending: trailing whitespace held back

    def close_block():
        out = []
        if open_kind == "reasoning":
            out.append(_event("content_block_delta", {"index": index, "delta": {
                "type": "signature_delta", "signature": ""}}))
        if open_kind is not None:
            out.append(_event("content_block_stop", {"index": index}))
        return out

    async for _, kind, payload in server._events(request, [seq]):
        if kind == "error":
            yield _event("error", {"error": _error_body(500, payload)["error"]})
            return
        if kind == "done":
            for e in close_block():
                yield e
            g = payload
            yield _event("message_delta", {"delta": _stop(seq, g), "usage": _usage(seq)})
            yield _event("message_stop", {})
            return
        for piece in payload:
            text = piece.text
            if piece.kind != open_kind:
                text = text.lstrip()
                if not text:
                    continue
                for e in close_block():
                    yield e
                index, open_kind, pending = index + 1, piece.kind, ""
                block = ({"type": "thinking", "thinking": "", "signature": ""}
                         if open_kind == "reasoning" else {"type": "text", "text": ""})
                yield _event("content_block_start", {"index": index, "content_block": block})
            text = pending + text
            body = text.rstrip()
            pending = text[len(body):]
            if body and not (hide and open_kind == "reasoning"):
                delta = ({"type": "thinking_delta", "thinking": body} if open_kind == "reasoning"
                         else {"type": "text_delta", "text": body})
                yield _event("content_block_delta", {"index": index, "delta": delta})
