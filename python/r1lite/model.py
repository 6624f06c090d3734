"""The Model users hold: logits, and generation with R1's reasoning split out."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

from .errors import InvalidArgument
from .generate import Generation, GenerationRun, Piece
from .sampling import SamplingParams, defaults_from_generation_config
from .tokenizer import THINK_OPEN, Tokenizer

EMPTY_THINK = THINK_OPEN + "\n\n</think>\n\n"  # prefilled to skip thinking (max_thinking_tokens=0)


def check_tokens(tokens, vocab_size: int, context: int, param: str = "tokens") -> np.ndarray:
    """Token ids as an int32 array, or InvalidArgument (with .param = param) naming what is wrong
    with them; .code is "context_length_exceeded" when they do not fit the context."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise InvalidArgument(f"tokens must be a flat sequence of ids, got shape {arr.shape}", param)
    if arr.size == 0:
        raise InvalidArgument("tokens is empty", param)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgument(f"token ids must be integers, got dtype {arr.dtype}", param)
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(f"token id {int(arr[i])} at index {i} is outside the vocabulary "
                              f"[0, {vocab_size})", param)
    if arr.size > context:
        raise InvalidArgument(f"{arr.size} tokens do not fit the context of {context} positions",
                              param, code="context_length_exceeded")
    return arr.astype(np.int32)


class Model:
    """A loaded model. Create it with r1lite.load()."""

    def __init__(self, core, config: dict, source: str, tokenizer: Tokenizer | None = None,
                 device: str = "cpu"):
        self._core = core
        self.device = device  # "cpu", or the CUDA device the forward pass runs on
        self._config = config
        self.source = source
        self.tokenizer = tokenizer
        self.summary: dict = {}  # parameters, tensor_formats, file_bytes (filled by load)
        self._lock = threading.Lock()  # one user of the KV cache at a time
        self._owner: int | None = None

    @contextmanager
    def _exclusive(self):
        """Hold the model (its KV cache) for one logits call or one whole generation; other
        threads wait. The thread that holds it through an unfinished stream gets an error rather
        than a deadlock."""
        if self._owner == threading.get_ident():
            raise RuntimeError("this thread is still iterating an earlier stream of this model: "
                               "finish it or close() it first")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    @property
    def config(self) -> dict:
        """The normalized config (architecture, vocab_size, hidden_size, num_layers, context, ...)."""
        return dict(self._config)

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def context(self) -> int:
        return self._config["context"]

    def logits(self, tokens, *, chunk: int | None = None) -> np.ndarray:
        """float32 logits [len(tokens), vocab_size] at every position, from an empty cache.

        chunk=k feeds the tokens k at a time through the KV cache (same result up to rounding).
        """
        ids = check_tokens(tokens, self._config["vocab_size"], self.context)
        if chunk is None:
            chunk = len(ids)
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise InvalidArgument(f"chunk must be a positive integer, got {chunk!r}", "chunk")
        with self._exclusive():
            self._core.reset()
            parts = [self._core.forward(ids[i:i + chunk], True) for i in range(0, len(ids), chunk)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now (it grows in pages as the context fills)."""
        return self._core.cache_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of attention cache each position costs (f32 values): keys and values of every
        kv head and layer, or for DeepSeek's MLA only the latent and the rope key per layer."""
        return self._core.cache_bytes_per_token

    # -- generation ----------------------------------------------------------------------------

    def generate(self, prompt, **kw) -> Generation:
        """Raw completion of a prompt (a string, or token ids), no chat template.

        Keywords: max_new_tokens (None: until EOS or the context is full), temperature (0 is
        greedy), top_k, top_p, min_p, repetition_penalty, seed, stop (string or list),
        max_thinking_tokens (close the think block after that many reasoning tokens).
        Unset sampling values come from the model's generation_config.json."""
        return self._collect(self.stream(prompt, **kw))

    def chat(self, messages, **kw) -> Generation:
        """The chat template applied to messages ([{"role": ..., "content": ...}]), then generate.
        For R1 models the reasoning is forced open with "<think>\\n" (DeepSeek's advice);
        max_thinking_tokens=0 prefills an empty think block to skip reasoning."""
        return self._collect(self.chat_stream(messages, **kw))

    def stream(self, prompt, **kw):
        """Like generate(), yielding Pieces (.kind "reasoning" or "answer", .text, .tokens)."""
        return self._run(self._prompt_ids(prompt), **kw)

    def chat_stream(self, messages, **kw):
        """Like chat(), yielding Pieces."""
        return self._run(self._chat_ids(messages, kw.get("max_thinking_tokens")), **kw)

    def _prompt_ids(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise InvalidArgument("prompt is empty", "prompt")
            if self.tokenizer is None:
                raise InvalidArgument("this model has no tokenizer: pass the prompt as token ids",
                                      "prompt")
            prompt = self.tokenizer.encode(prompt, add_special_tokens=True)
        return self._checked(prompt)

    def _chat_ids(self, messages, max_thinking_tokens) -> list[int]:
        if self.tokenizer is None:
            raise InvalidArgument("this model has no tokenizer, so no chat template", "messages")
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if self.tokenizer.thinks:
            inside = text.rstrip().endswith(THINK_OPEN)
            if max_thinking_tokens == 0:
                text += "\n</think>\n\n" if inside else EMPTY_THINK
            elif not inside:
                text += THINK_OPEN + "\n"
        return self._checked(self.tokenizer.encode(text, add_special_tokens=False))  # BOS is in

    def _checked(self, ids) -> list[int]:
        """The prompt ids, or ValueError if empty, outside the vocabulary or longer than the context."""
        return check_tokens(ids, self._config["vocab_size"], self.context, "prompt").tolist()

    def _sequence_args(self, prompt_ids, *, max_new_tokens=None, temperature=None, top_k=None,
                       top_p=None, min_p=None, repetition_penalty=None, seed=None, stop=None,
                       max_thinking_tokens=None) -> dict:
        """The arguments of a generate.Sequence for these prompt ids and generation keywords."""
        defaults = defaults_from_generation_config(
            self.tokenizer.generation_config if self.tokenizer else None)
        given = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                     repetition_penalty=repetition_penalty)
        sampling = SamplingParams(**{k: defaults[k] if v is None else v for k, v in given.items()},
                                  seed=seed)
        tok = self.tokenizer
        inside_think = tok is not None and tok.thinks and \
            tok.decode(prompt_ids[-3:]).rstrip().endswith(THINK_OPEN)
        return dict(tokenizer=tok, prompt_ids=prompt_ids, sampling=sampling,
                    max_new_tokens=max_new_tokens, stop=stop,
                    max_thinking_tokens=max_thinking_tokens, inside_think=inside_think,
                    eos_ids=tok.eos_ids if tok else [])

    def _run(self, prompt_ids, **kw):
        return _Stream(GenerationRun(self._core, exclusive=self._exclusive,
                                     **self._sequence_args(prompt_ids, **kw)))

    @staticmethod
    def _collect(stream) -> Generation:
        for _ in stream:
            pass
        return stream.generation

    def __repr__(self):
        c = self._config
        return (f"<r1lite.Model {c['architecture']} {c['num_layers']} layers, "
                f"hidden {c['hidden_size']}, context {c['context']}, from {self.source}>")


class _Stream:
    """An iterator of Pieces whose .generation is the whole result once it is exhausted."""

    def __init__(self, run: GenerationRun):
        self._run = run
        self._it = iter(run)

    def __iter__(self):
        return self

    def __next__(self) -> Piece:
        return next(self._it)

    def close(self) -> None:
        """Stop early and free the model for other calls."""
        self._it.close()

    @property
    def generation(self) -> Generation | None:
        return self._run.generation
