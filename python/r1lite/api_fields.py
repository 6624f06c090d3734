"""What the server's API dialects share: ApiError (an HTTP status, a message, the field at fault)
and the checks of request fields that raise it. server.py renders ApiError in OpenAI's shape,
anthropic_api.py in Anthropic's."""

from __future__ import annotations

import math


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        """OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}
        return {"error": {"message": self.message, "type": kind.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}


def field(body: dict, name: str, kinds, check=None, what: str = ""):
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


def number(body, name, low, high, what):
    return field(body, name, (int, float), lambda v: math.isfinite(v) and low <= v <= high, what)


def same(value, default) -> bool:
    """value is default: numbers by value (0 and 0.0 alike), booleans only as booleans."""
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and value == default
    return value == default


def check_fields(body: dict, known, unimplemented: dict) -> None:
    """ApiError 400 for a field that is not known, or an unimplemented one (a name -> the values
    that ask for nothing) that asks for something: never a silently different answer."""
    for name, value in body.items():
        if name in known:
            continue
        if name in unimplemented:
            if any(same(value, d) for d in unimplemented[name]):
                continue
            raise ApiError(400, f"'{name}' is not supported by r1lite's server yet (got {value!r})",
                           param=name, code="unsupported_parameter")
        raise ApiError(400, f"unrecognized request field '{name}'", param=name, code="unknown_parameter")
