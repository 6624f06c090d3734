"""OpenAI-style function calling for chat: the tools checked, shown to the model, its calls
parsed back, and (tool_choice "required" or a named function) the call constrained by a grammar.

Two call syntaxes, chosen by the chat template:
- "deepseek" (a template with DeepSeek's tool-call markers, the R1 family's): what the template
  renders for an assistant's tool_calls,
  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\nARGS\\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>
- "hermes" (every other template; Qwen2.5's own): <tool_call>\\n{"name": NAME, "arguments": ARGS}\\n</tool_call>

A template that renders the `tools` variable itself gets the tools that way. Otherwise (R1's
template shows past calls but never the tool list; SmolLM2's knows no tools) the JSON-in-text
fallback: a system message (joined to the user's own system prompt) lists the functions as JSON
and gives the call syntax above. Likewise past calls and tool results go to the template as
tool_calls / role "tool" messages when it handles them, else as text: the call syntax in the
assistant's content, a result as a user message <tool_response>\\n...\\n</tool_response>.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from . import constrain
from .errors import InvalidArgument

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
HERMES_BEGIN, HERMES_END = "<tool_call>", "</tool_call>"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
START = {"deepseek": CALLS_BEGIN, "hermes": HERMES_BEGIN}  # what opens the model's calls


@dataclass
class Function:
    name: str
    description: str
    parameters: dict  # a JSON schema of the arguments (an object)


@dataclass
class ToolChoice:
    functions: list          # [Function]
    choice: str              # "auto", "none", "required", or "function" (named: .name)
    name: str | None = None

    @property
    def constrained(self) -> bool:
        return self.choice in ("required", "function")

    @property
    def callable(self) -> list:
        """The functions the model may call now."""
        if self.choice == "none":
            return []
        return [f for f in self.functions if self.choice != "function" or f.name == self.name]


def check(tools, tool_choice) -> ToolChoice | None:
    """The request's tools and tool_choice checked (InvalidArgument naming "tools[i]..." or
    "tool_choice"); None when there are no tools."""
    if tools is None or tools == []:
        if tool_choice not in (None, "none", "auto"):
            raise InvalidArgument("'tool_choice' needs 'tools'", "tool_choice")
        return None
    if not isinstance(tools, list):
        raise InvalidArgument("'tools' must be a list of {'type': 'function', 'function': {...}}",
                              "tools")
    functions = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(
                tool.get("function"), dict):
            raise InvalidArgument(f"{where} must be {{'type': 'function', 'function': {{...}}}}", where)
        f = tool["function"]
        name = f.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidArgument(f"{where}.function.name must be 1-64 letters, digits, _ or -, "
                                  f"got {name!r}", f"{where}.function.name")
        if name in (g.name for g in functions):
            raise InvalidArgument(f"{where}: the function name {name!r} is used twice", where)
        description = f.get("description", "")
        if not isinstance(description, str):
            raise InvalidArgument(f"{where}.function.description must be a string",
                                  f"{where}.function.description")
        params = f.get("parameters", {"type": "object", "properties": {}})
        pwhere = f"{where}.function.parameters"
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise InvalidArgument(f"{pwhere} must be a JSON schema of an object, got {params!r}", pwhere)
        if constrain.available():  # compiles, or names what is wrong
            constrain.json_schema(params, pwhere)
        functions.append(Function(name, description, params))
    if tool_choice is None:
        tool_choice = "auto"
    if tool_choice in ("auto", "none", "required"):
        return ToolChoice(functions, tool_choice)
    if (isinstance(tool_choice, dict) and tool_choice.get("type") == "function"
            and isinstance(tool_choice.get("function"), dict)):
        name = tool_choice["function"].get("name")
        if name not in [f.name for f in functions]:
            raise InvalidArgument(f"tool_choice names the function {name!r}, which is not in "
                                  f"'tools' ({', '.join(f.name for f in functions)})", "tool_choice")
        return ToolChoice(functions, "function", name)
    raise InvalidArgument("'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', "
                          f"'function': {{'name': ...}}}}, got {tool_choice!r}", "tool_choice")


def message_calls(message: dict, i: int) -> list | None:
    """A past assistant message's tool_calls checked (InvalidArgument naming
    messages[i].tool_calls), as the template wants them; None when it has none."""
    calls = message.get("tool_calls")
    if calls is None or calls == []:
        return None
    where = f"messages[{i}].tool_calls"
    if message.get("role") != "assistant" or not isinstance(calls, list):
        raise InvalidArgument(f"{where}: only an assistant message has tool_calls, a list", where)
    out = []
    for k, call in enumerate(calls):
        f = call.get("function") if isinstance(call, dict) else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not isinstance(
                f.get("arguments"), str):
            raise InvalidArgument(f"{where}[{k}] must be {{'id', 'type': 'function', 'function': "
                                  f"{{'name', 'arguments': a JSON string}}}}", f"{where}[{k}]")
        out.append({"id": call.get("id", ""), "type": "function",
                    "function": {"name": f["name"], "arguments": f["arguments"]}})
    return out


# -- the chat template side ----------------------------------------------------------------------

def style(tokenizer) -> str:
    """The call syntax this model's template speaks: "deepseek" or "hermes"."""
    source = tokenizer.chat_template_source or ""
    return "deepseek" if "tool▁calls▁begin" in source else "hermes"


def _template_has(tokenizer, word: str) -> bool:
    return re.search(r"\b%s\b" % word, tokenizer.chat_template_source or "") is not None


def call_text(style_name: str, name: str, arguments: str) -> str:
    """One call as the model writes it."""
    if style_name == "deepseek":
        return (f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}{name}\n```json\n{arguments}\n```"
                f"{CALL_END}{CALLS_END}")
    return f'{HERMES_BEGIN}\n{{"name": {json.dumps(name)}, "arguments": {arguments}}}\n{HERMES_END}'


def _fallback_prompt(functions, style_name: str) -> str:
    listed = "\n".join(json.dumps({"name": f.name, "description": f.description,
                                   "parameters": f.parameters}, ensure_ascii=False) for f in functions)
    example = call_text(style_name, "<function name>", "<arguments as a JSON object>")
    return ("You can call these functions (one JSON description per line):\n" + listed +
            "\n\nTo call a function, answer with nothing but the call, in this form:\n" + example +
            "\nThen wait for its result, given back in <tool_response></tool_response> or as a "
            "tool output.")


def render(messages: list[dict], tokenizer, tools: ToolChoice | None) -> tuple[list[dict], dict]:
    """(messages, extra template variables) for the template: the callable tools shown (as the
    `tools` variable or the fallback system message), past calls and results kept where the
    template handles them, written as text where not."""
    name = style(tokenizer)
    calls_ok = _template_has(tokenizer, "tool_calls")
    results_ok = calls_ok or re.search(r"""['"]tool['"]""", tokenizer.chat_template_source or "")
    out = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = m["tool_calls"]
            if calls_ok:
                out.append({"role": "assistant", "content": None, "tool_calls": calls})
            else:
                text = "\n".join(call_text(name, c["function"]["name"], c["function"]["arguments"])
                                 for c in calls)
                out.append({"role": "assistant", "content": ((m.get("content") or "") + "\n" + text).strip()})
        elif m["role"] == "tool" and not results_ok:
            out.append({"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"})
        else:
            out.append(m)
    extra = {}
    functions = tools.callable if tools is not None else []
    if functions and _template_has(tokenizer, "tools"):
        extra["tools"] = [{"type": "function", "function": {"name": f.name, "description": f.description,
                                                            "parameters": f.parameters}}
                          for f in functions]
    elif functions:
        prompt = _fallback_prompt(functions, name)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + prompt}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out, extra


# -- constraining and parsing the calls -----------------------------------------------------------

def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a Lark string literal


def grammar(tools: ToolChoice, tokenizer) -> constrain.Grammar:
    """The grammar of one call to one of the callable functions, its arguments following the
    function's parameters schema (tool_choice "required" or a named function)."""
    name = style(tokenizer)
    alternatives = []
    for f in tools.callable:
        args = constrain.json_rule(f.parameters)
        if name == "deepseek":
            prefix = f.name + "\n```json\n"
            alternatives.append(f"{_lit(prefix)} {args}")
        else:
            prefix = '\n{"name": ' + json.dumps(f.name) + ', "arguments": '
            alternatives.append(f'{_lit(prefix)} {args} "}}"')
    body = " | ".join(f"({a})" for a in alternatives)
    ws = "/[ \\t\\n]{0,%d}/" % constrain.MAX_LEADING_WS
    if name == "deepseek":
        opening, closing = CALLS_BEGIN + CALL_BEGIN + "function" + SEP, "\n```" + CALL_END + CALLS_END
    else:
        opening, closing = HERMES_BEGIN, "\n" + HERMES_END
    text = f"start: {ws} {_lit(opening)} ({body}) {_lit(closing)}\n"
    return constrain.lark(text, "tool_choice")


_DEEPSEEK_CALL = re.compile(re.escape(CALL_BEGIN) + r"(?:\w*)" + re.escape(SEP) +
                            r"([^\n]*)\n```(?:json)?\n(.*?)\n?```\s*(?:" + re.escape(CALL_END) + "|$)",
                            re.DOTALL)
_HERMES_CALL = re.compile(re.escape(HERMES_BEGIN) + r"\s*(.*?)\s*(?:" + re.escape(HERMES_END) + "|$)",
                          re.DOTALL)


def _call(name: str, arguments: str) -> dict:
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": name.strip(), "arguments": arguments.strip()}}


def parse(answer: str, style_name: str) -> tuple[str, list]:
    """(the text before the calls, [OpenAI tool_calls]); no calls: (answer, [])."""
    start = answer.find(START[style_name])
    if style_name == "deepseek" and start < 0:
        start = answer.find(CALL_BEGIN)
    if start < 0:
        return answer, []
    head, rest = answer[:start].strip(), answer[start:]
    calls = []
    if style_name == "deepseek":
        for m in _DEEPSEEK_CALL.finditer(rest):
            calls.append(_call(m.group(1), m.group(2)))
    else:
        for m in _HERMES_CALL.finditer(rest):
            try:
                obj = json.loads(m.group(1))
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("name"), str):
                args = obj.get("arguments", obj.get("parameters", {}))
                calls.append(_call(obj["name"], args if isinstance(args, str) else
                                   json.dumps(args, ensure_ascii=False)))
    if not calls:
        return answer, []
    return head, calls


def held_back(text: str, style_name: str) -> int:
    """How many characters at the end of streamed answer text may begin a call (to hold back)."""
    marker = START[style_name]
    for n in range(min(len(marker), len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
