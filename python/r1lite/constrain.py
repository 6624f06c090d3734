"""Constrained decoding: the answer follows a grammar (a JSON schema, any JSON object, a Lark
grammar), so it always parses. llguidance (the `structured` extra) does the grammar work: from
the tokenizer's token bytes (a table built once per tokenizer) it computes, at each step, the
set of tokens that keep the output a prefix of the grammar's language; the other tokens' logits
become -inf before sampling. EOS is only allowed once the grammar is satisfied.

Grammars are Lark text in llguidance's dialect (`%json {schema}` embeds a JSON schema). JSON is
written in one line with ", " and ": " separators (no free whitespace, so a model cannot fill
its token budget with blanks), after at most MAX_LEADING_WS blanks (the "\\n\\n" after
</think>)."""

from __future__ import annotations

import json

import numpy as np

from .errors import InvalidArgument

MAX_LEADING_WS = 4
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_LEADING = "/[ \\t\\n]{0,%d}/" % MAX_LEADING_WS


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise ImportError("structured output (response_format, grammars, tool_choice 'required' "
                          "or a named function) needs llguidance: pip install "
                          "'r1lite[structured]'") from None
    return llguidance


def available() -> bool:
    try:
        _llguidance()
    except ImportError:
        return False
    return True


class Grammar:
    """A checked grammar: Lark text for llguidance. Make one with json_schema(), json_object()
    or lark(); InvalidArgument (naming param) when it does not compile."""

    def __init__(self, lark_text: str, param: str = "grammar"):
        llg = _llguidance()
        error = llg.LLMatcher.validate_grammar(llg.LLMatcher.grammar_from_lark(lark_text))
        if error:
            raise InvalidArgument(f"{param}: the grammar does not compile: {error.strip()}", param)
        self.lark = lark_text

    def __repr__(self):
        return f"<r1lite.constrain.Grammar {len(self.lark)} chars>"


def json_rule(schema) -> str:
    """The Lark expression for one JSON value following schema (a dict; True: any JSON)."""
    if schema is True:
        schema = {}
    if not isinstance(schema, dict):
        raise InvalidArgument(f"a JSON schema must be an object, got {schema!r}", "schema")
    options = {**JSON_OPTIONS, **schema.get("x-guidance", {})}
    return "%json " + json.dumps({**schema, "x-guidance": options})


def json_schema(schema, param: str = "json_schema") -> Grammar:
    """Any JSON value that validates against schema."""
    if not isinstance(schema, dict):
        raise InvalidArgument(f"{param}: a JSON schema must be an object, got {schema!r}", param)
    return Grammar(f"start: {_LEADING} {json_rule(schema)}\n", param)


def json_object(param: str = "response_format") -> Grammar:
    """Any JSON object (OpenAI's json_object mode)."""
    return json_schema({"type": "object"}, param)


def lark(source: str, param: str = "grammar") -> Grammar:
    """A grammar in llguidance's Lark dialect (start rule `start`), as given."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidArgument(f"{param}: a grammar must be non-empty Lark text", param)
    return Grammar(source, param)


def from_response_format(value, param: str = "response_format") -> Grammar | None:
    """The grammar an OpenAI response_format asks for (None for {"type": "text"}); a Grammar
    passes through. Shapes: {"type": "json_object"}, {"type": "json_schema", "json_schema":
    {"name", "schema", "strict"}}, and r1lite's {"type": "grammar", "grammar": lark text}."""
    if value is None or isinstance(value, Grammar):
        return value
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json_object(param)
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidArgument(f"{param}.json_schema must be an object with a 'schema' object",
                                  param)
        return json_schema(spec.get("schema", {}), param)
    if kind == "grammar":
        return lark(value.get("grammar"), param)
    raise InvalidArgument(f"{param} must be {{'type': 'text' | 'json_object' | 'json_schema' | "
                          f"'grammar', ...}}, got {value!r}", param)


def token_table(tokenizer, vocab_size: int):
    """llguidance's view of the tokenizer: every token's bytes (added tokens are special: a
    grammar's text never matches them), EOS, padded to the model's vocab_size. Built once per
    tokenizer and size (about a second for a 150K vocabulary)."""
    cache = tokenizer.__dict__.setdefault("_llg_tables", {})
    if vocab_size not in cache:
        llg = _llguidance()
        from llguidance._tokenizer import TokenizerWrapper

        n = min(tokenizer.vocab_size, vocab_size)
        tokens = [tokenizer.token_bytes(i) for i in range(n)] + [b""] * (vocab_size - n)

        class _Source:  # what TokenizerWrapper reads
            eos_token_id = tokenizer.eos_ids[0] if tokenizer.eos_ids else None
            bos_token_id = tokenizer.bos_id
            special_token_ids = tokenizer.added_token_ids()

            def __init__(self):
                self.tokens = tokens

            def __call__(self, text):
                return tokenizer.encode(text if isinstance(text, str) else text.decode("utf-8", "replace"))

        if not tokenizer.eos_ids:
            raise InvalidArgument("constrained decoding needs a tokenizer with an end-of-sequence "
                                  "token", "response_format")
        cache[vocab_size] = llg.LLTokenizer(TokenizerWrapper(_Source()), n_vocab=vocab_size,
                                            eos_token=list(tokenizer.eos_ids))
    return cache[vocab_size]


class Constraint:
    """One sequence's grammar state: mask() the logits of the next token, then consume() it."""

    def __init__(self, grammar: Grammar, table):
        llg = _llguidance()
        self.matcher = llg.LLMatcher(table, llg.LLMatcher.grammar_from_lark(grammar.lark), log_level=0)
        if self.matcher.is_error():
            raise InvalidArgument(f"grammar: {self.matcher.get_error()}", "response_format")
        self.vocab_size = table.vocab_size
        self._bits = np.zeros((self.vocab_size + 31) // 32, dtype=np.int32)

    def allowed(self) -> np.ndarray:
        """A boolean array over the vocabulary: the tokens the grammar allows next."""
        self.matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        return np.unpackbits(self._bits.view(np.uint8), bitorder="little")[:self.vocab_size].view(bool)

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """A copy of logits with the disallowed tokens at -inf."""
        allowed = self.allowed()
        n = min(len(logits), allowed.size)
        out = np.full(len(logits), -np.inf, dtype=np.float32)
        out[:n] = np.where(allowed[:n], logits[:n], -np.inf)
        return out

    def consume(self, token: int) -> None:
        if not self.matcher.consume_token(int(token)):
            raise RuntimeError(f"the grammar rejected token {token}: {self.matcher.get_error()}")

    @property
    def accepting(self) -> bool:
        """Whether the output so far is complete (the grammar is satisfied)."""
        return self.matcher.is_accepting()
