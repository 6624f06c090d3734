"""The tokenizer of a model: tokenizers' BPE plus special tokens, the chat template and the
generation defaults read from tokenizer_config.json / chat_template.jinja / generation_config.json."""

from __future__ import annotations

import json
from pathlib import Path

from .chat_template import compile_template, render
from .errors import InvalidArgument, ModelFormatError

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the character standing for each byte in a token's name
    (printable bytes stand for themselves, the others for 256 + their rank)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + i): b for i, b in enumerate(others)})
    return table


BYTE_LEVEL = _byte_level_table()


def _as_id_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, list) else [value])]


class Tokenizer:
    def __init__(self, tokenizer_json, tokenizer_config: dict | None = None,
                 chat_template: str | None = None, generation_config: dict | None = None,
                 model_config: dict | None = None, where: str = "tokenizer"):
        from tokenizers import Tokenizer as HFTokenizer

        try:  # tokenizer.json text, or a tokenizer already built (formats/gguf_tokenizer.py)
            self._tok = tokenizer_json if isinstance(tokenizer_json, HFTokenizer) else HFTokenizer.from_str(tokenizer_json)
        except Exception as e:  # tokenizers raises bare Exceptions for bad JSON
            raise ModelFormatError(f"{where}: tokenizer.json does not load ({e})") from None
        for name, value in (("tokenizer_config", tokenizer_config), ("generation_config", generation_config),
                            ("model config", model_config)):
            if value is not None and not isinstance(value, dict):
                raise ModelFormatError(f"{where}: {name} must be a JSON object, got {type(value).__name__}")
        cfg = tokenizer_config or {}
        self.generation_config = dict(generation_config or {})
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self.bos_id = self.token_id(self.bos_token)
        eos_ids = _as_id_list(self.generation_config.get("eos_token_id"))
        eos_ids += _as_id_list((model_config or {}).get("eos_token_id"))
        if self.eos_token is not None and self.token_id(self.eos_token) is not None:
            eos_ids.append(self.token_id(self.eos_token))
        self.eos_ids = sorted(set(eos_ids))
        template = chat_template if chat_template is not None else cfg.get("chat_template")
        if isinstance(template, list):  # named templates: use the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        self.chat_template_source = template
        self._template = compile_template(template) if template else None
        self.think_open_id = self.token_id(THINK_OPEN)
        self.think_close_id = self.token_id(THINK_CLOSE)

    @classmethod
    def from_folder(cls, folder, model_config: dict | None = None) -> "Tokenizer | None":
        """The tokenizer in a Hugging Face folder, or None when it has no tokenizer.json."""
        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            return None
        def read(name):
            p = folder / name
            if not p.is_file():
                return None
            try:
                return json.loads(p.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ModelFormatError(f"{p}: not valid JSON ({e})") from None
        template_file = folder / "chat_template.jinja"
        return cls((folder / "tokenizer.json").read_text(encoding="utf-8"),
                   tokenizer_config=read("tokenizer_config.json"),
                   chat_template=template_file.read_text(encoding="utf-8") if template_file.is_file() else None,
                   generation_config=read("generation_config.json"),
                   model_config=model_config, where=str(folder))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def thinks(self) -> bool:
        """Whether the vocabulary has R1's <think> and </think> tokens."""
        return self.think_open_id is not None and self.think_close_id is not None

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def token_id(self, text: str | None) -> int | None:
        return None if text is None else self._tok.token_to_id(text)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        # A text that already starts with BOS must not get a second one.
        if add_special_tokens and self.bos_id is not None and ids[:2] == [self.bos_id] * 2:
            ids = ids[1:]
        return ids

    def added_token_ids(self) -> list[int]:
        """Ids of the tokens added to the BPE vocabulary (special and control tokens, <think>)."""
        return sorted(self._tok.get_added_tokens_decoder())

    def token_texts(self) -> list[str]:
        """Each token id's text on its own (for the DRY sampler's sequence breakers)."""
        return self._tok.decode_batch([[i] for i in range(self.vocab_size)],
                                      skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        """A token's own bytes (a byte-level BPE token may hold part of a UTF-8 character)."""
        name = self._tok.id_to_token(int(token_id))
        if (name is not None and type(self._tok.decoder).__name__ == "ByteLevel"
                and all(c in BYTE_LEVEL for c in name)):
            return bytes(BYTE_LEVEL[c] for c in name)
        return self.decode([int(token_id)]).encode("utf-8")

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, **extra) -> str:
        if self._template is None:
            raise InvalidArgument("this model has no chat template; use generate() with a raw prompt",
                                  "messages")
        return render(self._template, messages, bos_token=self.bos_token or "",
                      eos_token=self.eos_token or "", add_generation_prompt=add_generation_prompt,
                      **extra)


class StreamDecoder:
    """Token ids in, text out, never splitting a multi-byte UTF-8 character: text is held back
    while the decoded tail is an incomplete character (U+FFFD)."""

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # ids before this are already emitted and no longer decoded
        self._read = 0    # ids before this have produced the text emitted so far

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        done = self._tok.decode(self._ids[self._prefix:self._read])
        full = self._tok.decode(self._ids[self._prefix:])
        if len(full) > len(done) and not full.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return full[len(done):]
        return ""

    def flush(self) -> str:
        """Whatever is held back (an incomplete character decodes as U+FFFD)."""
        done = self._tok.decode(self._ids[self._prefix:self._read])
        full = self._tok.decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return full[len(done):]
