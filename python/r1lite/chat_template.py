"""Chat templates rendered with jinja2 the way transformers renders them: a sandboxed
environment with trim_blocks / lstrip_blocks, loop controls, `raise_exception`, `tojson` and
`strftime_now`, and the variables messages, bos_token, eos_token, add_generation_prompt."""

from __future__ import annotations

import json
from datetime import datetime

from .errors import InvalidArgument

ROLES = ("system", "user", "assistant", "tool")


def _raise_exception(message):
    raise ValueError(f"chat template: {message}")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def compile_template(source: str):
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except TemplateError as e:
        raise ValueError(f"chat template does not compile: {e}") from None


def check_messages(messages) -> list[dict]:
    """The messages, or InvalidArgument naming what is wrong with them."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InvalidArgument("messages must be a non-empty list of {'role': ..., 'content': ...} dicts",
                              "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidArgument(f"message {i} is not a dict", "messages")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidArgument(f"message {i} has unknown role {role!r} "
                                  f"(expected one of {', '.join(ROLES)})", "messages")
        content = m.get("content")
        if not isinstance(content, str) and not (content is None and m.get("tool_calls")):
            raise InvalidArgument(f"message {i} ({role}) needs string content", "messages")
    return list(messages)


def render(template, messages, *, bos_token: str, eos_token: str,
           add_generation_prompt: bool = True, **extra) -> str:
    from jinja2 import TemplateError

    try:
        return template.render(messages=check_messages(messages), bos_token=bos_token,
                               eos_token=eos_token, add_generation_prompt=add_generation_prompt,
                               **extra)
    except TemplateError as e:
        raise ValueError(f"chat template failed: {e}") from None
