"""The Model users hold: logits, and generation with R1's reasoning split out."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgument
from .generate import Generation, GenerationRun, Piece, Sequence, thinking_budget
from .sampling import SamplingParams, defaults_from_generation_config
from .session import Batch, Session
from .speculative import parse_speculative
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


@dataclass(frozen=True)
class Prompt:
    """A prompt checked against its model: token ids, and whether they end inside a <think> block
    (then the model's first output is reasoning)."""
    ids: list[int]
    inside_think: bool = False


class Model:
    """A loaded model. Create it with r1lite.load()."""

    def __init__(self, core, config: dict, source: str, tokenizer: Tokenizer | None = None,
                 device: str = "cpu", summary: dict | None = None):
        self._core = core
        self.device = device  # "cpu", or the CUDA device the forward pass runs on
        self._config = config
        self.source = source
        self.tokenizer = tokenizer
        self._summary = dict(summary or {})
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
    def summary(self) -> dict:
        """What load measured of the weights: parameters, tensor_formats, file_bytes,
        decode_bytes_per_token (loader.summarize)."""
        return dict(self._summary)

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def context(self) -> int:
        return self._config["context"]

    @property
    def device_name(self) -> str | None:
        """The GPU's name for a model on a CUDA device; None on the CPU."""
        return getattr(self._core, "device_name", None)

    def copy_bandwidth(self, nbytes: int = 1 << 30, repeats: int = 10) -> float:
        """Bytes/s of a device-to-device copy of nbytes (read + write), best of repeats; only for
        a model on a CUDA device (RuntimeError on the CPU)."""
        if self.device_name is None:
            raise RuntimeError("copy_bandwidth measures a CUDA device; this model is on the CPU")
        return self._core.copy_bandwidth(nbytes, repeats)

    def logits(self, tokens, *, chunk: int | None = None) -> np.ndarray:
        """float32 logits [len(tokens), vocab_size] at every position, from an empty cache.

        chunk=k feeds the tokens k at a time through the KV cache (same result up to rounding).
        """
        ids = check_tokens(tokens, self._config["vocab_size"], self.context)
        if chunk is None:
            chunk = len(ids)
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise InvalidArgument(f"chunk must be a positive integer, got {chunk!r}", "chunk")
        with self.session() as s:
            s.reset()
            parts = [s.forward(ids[i:i + chunk], True) for i in range(0, len(ids), chunk)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now (it grows in pages as the context fills)."""
        return self._core.cache_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of attention cache each position costs in the cache's format (config["kv_cache"]):
        keys and values of every kv head and layer, or for DeepSeek's MLA only the latent and the
        rope key per layer (q8_0: with one f16 scale per 32 values)."""
        return self._core.cache_bytes_per_token

    # -- holding the cache ---------------------------------------------------------------------

    @contextmanager
    def session(self):
        """`with model.session() as s:` holds the model (other threads wait) and yields a
        session.Session stepping one sequence through its cache. RuntimeError if this thread
        already holds it through an unfinished stream."""
        with self._exclusive():
            yield Session(self._core)

    def batch(self) -> Batch:
        """Hold the model until the returned session.Batch is closed (waiting while another
        caller uses it), to decode several sequences together (the server's engine; CPU only)."""
        self._lock.acquire()
        return Batch(self._core, self._lock.release)

    # -- prompts and sequences -----------------------------------------------------------------

    def text_prompt(self, prompt) -> Prompt:
        """A raw prompt (a string, encoded with BOS; or token ids) checked: InvalidArgument
        (param "prompt") if empty, outside the vocabulary or longer than the context."""
        if isinstance(prompt, str):
            if not prompt:
                raise InvalidArgument("prompt is empty", "prompt")
            if self.tokenizer is None:
                raise InvalidArgument("this model has no tokenizer: pass the prompt as token ids",
                                      "prompt")
            ids = self._checked(self.tokenizer.encode(prompt, add_special_tokens=True), "prompt")
            return Prompt(ids, self._ends_inside_think(prompt))
        ids = self._checked(prompt, "prompt")
        return Prompt(ids, self._thinks and self._ends_inside_think(self.tokenizer.decode(ids[-3:])))

    def chat_prompt(self, messages, max_thinking_tokens: int | None = None,
                    template_vars: dict | None = None) -> Prompt:
        """The chat template applied to messages (and template_vars, e.g. tools). For a model
        that thinks (R1) the reasoning is opened with "<think>" unless the template did;
        max_thinking_tokens=0 prefills an empty think block instead. InvalidArgument (param
        "messages") if it does not fit the context."""
        if self.tokenizer is None:
            raise InvalidArgument("this model has no tokenizer, so no chat template", "messages")
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  **(template_vars or {}))
        if self._thinks:
            inside = self._ends_inside_think(text)
            if max_thinking_tokens == 0:
                text += "\n</think>\n\n" if inside else EMPTY_THINK
            elif not inside:
                text += THINK_OPEN + "\n"
        ids = self.tokenizer.encode(text, add_special_tokens=False)  # BOS is in the text
        return Prompt(self._checked(ids, "messages"), self._ends_inside_think(text))

    @property
    def _thinks(self) -> bool:
        return self.tokenizer is not None and self.tokenizer.thinks

    def _ends_inside_think(self, text: str) -> bool:
        """Whether a prompt ending with this text leaves the model inside a think block."""
        return self._thinks and text.rstrip().endswith(THINK_OPEN)

    def _checked(self, ids, param: str) -> list[int]:
        return check_tokens(ids, self._config["vocab_size"], self.context, param).tolist()

    def sampling_defaults(self) -> dict:
        """The sampling values used where a call leaves them unset: the generation_config.json's;
        for a model that thinks (R1 family) temperature 0.6 / top_p 0.95 where it is silent or
        absent; otherwise llama.cpp's defaults (sampling.defaults_from_generation_config)."""
        tok = self.tokenizer
        return defaults_from_generation_config(tok.generation_config if tok else None,
                                               r1_family=self._thinks)

    def new_sequence(self, prompt: Prompt, *, max_new_tokens=None, temperature=None, top_k=None,
                     top_p=None, min_p=None, repetition_penalty=None, seed=None, stop=None,
                     max_thinking_tokens=None, reasoning_effort=None, thinking_margin=None,
                     loop_guard=True, dry_multiplier=None, dry_base=None, dry_allowed_length=None,
                     dry_penalty_last_n=None, dry_sequence_breakers=None, presence_penalty=0.0,
                     frequency_penalty=0.0, logit_bias=None, logprobs=None,
                     prompt_logprobs=False, response_format=None) -> Sequence:
        """A generate.Sequence of this prompt (see generate() for the keywords; unset sampling
        values come from sampling_defaults()). InvalidArgument names a bad one."""
        if not isinstance(prompt, Prompt):
            raise TypeError(f"prompt must be a Prompt (from text_prompt or chat_prompt), got "
                            f"{type(prompt).__name__}")
        tok = self.tokenizer
        defaults = self.sampling_defaults()
        given = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                     repetition_penalty=repetition_penalty)
        dry = dict(dry_multiplier=dry_multiplier, dry_base=dry_base,
                   dry_allowed_length=dry_allowed_length, dry_penalty_last_n=dry_penalty_last_n,
                   dry_sequence_breakers=dry_sequence_breakers)
        sampling = SamplingParams(**{k: defaults[k] if v is None else v for k, v in given.items()},
                                  seed=seed, **{k: v for k, v in dry.items() if v is not None},
                                  presence_penalty=0.0 if presence_penalty is None else presence_penalty,
                                  frequency_penalty=0.0 if frequency_penalty is None else frequency_penalty,
                                  logit_bias=logit_bias).check(self._config["vocab_size"])
        return Sequence(tok, prompt.ids, sampling=sampling, max_new_tokens=max_new_tokens,
                        constraint=self.constraint(response_format),
                        stop=stop, max_thinking_tokens=thinking_budget(max_thinking_tokens,
                                                                       reasoning_effort),
                        inside_think=prompt.inside_think, eos_ids=tok.eos_ids if tok else [],
                        context=self._core.context, loop_guard=loop_guard,
                        thinking_margin=thinking_margin, logprobs=logprobs,
                        prompt_logprobs=prompt_logprobs)

    def constraint(self, response_format):
        """A constrain.Constraint for a response_format (see generate()), or None for none."""
        from . import constrain

        grammar = constrain.from_response_format(response_format)
        if grammar is None:
            return None
        if self.tokenizer is None:
            raise InvalidArgument("constrained output needs a model with a tokenizer", "response_format")
        return constrain.Constraint(grammar, constrain.token_table(self.tokenizer,
                                                                   self._config["vocab_size"]))

    # -- generation ----------------------------------------------------------------------------

    def generate(self, prompt, **kw) -> Generation:
        """Raw completion of a prompt (a string, or token ids), no chat template.

        Keywords: max_new_tokens (None: until EOS or the context is full), temperature (0 is
        greedy), top_k, top_p, min_p, repetition_penalty, seed, stop (string or list),
        max_thinking_tokens (close the think block within that many reasoning tokens, with a
        short closing sentence when there is room: generate.THINK_LANDING), thinking_margin
        (tokens before that point where a sentence or paragraph end may land it; default 64),
        reasoning_effort ("low" / "medium" / "high": budgets 1024 / 4096 / 16384 when
        max_thinking_tokens is unset), loop_guard (default True: a verbatim loop closes the
        reasoning, or stops the answer with finish_reason "repetition"), and the DRY sampler:
        dry_multiplier (0: off, the default), dry_base (1.75), dry_allowed_length (2),
        dry_penalty_last_n (-1: the whole context, 0: off), dry_sequence_breakers
        (["\\n", ":", "\\"", "*"]); OpenAI's presence_penalty and frequency_penalty (in [-2, 2],
        over the generated tokens) and logit_bias ({token id: bias in [-100, 100]}). Unset
        sampling values come from sampling_defaults().

        logprobs=k (0..20): g.logprobs holds each generated token's log-probability under the
        model (log-softmax of the raw logits) and the k most likely tokens (logprobs.TokenLogprob);
        prompt_logprobs=True adds g.prompt_logprobs for the prompt's tokens (None for the first),
        and then max_new_tokens may be 0 (score the prompt only).

        response_format constrains the answer with a grammar (llguidance, the `structured`
        extra), so that it always parses: OpenAI's {"type": "json_object"} or {"type":
        "json_schema", "json_schema": {"schema": {...}}}, {"type": "grammar", "grammar": lark
        text}, or a constrain.Grammar (constrain.json_schema(schema), constrain.lark(text)).
        A model that thinks reasons freely; the constraint starts after </think>.

        speculative: "ngram" (prompt lookup), a draft Model with the same tokenizer, or a dict /
        speculative.Speculative (proposer "ngram" or "draft", k tokens proposed per step, n the
        longest n-gram matched, draft). Several proposed tokens are checked in one forward pass;
        the output is that of plain decoding (greedy: token for token; sampling: the same
        distribution). CPU only. stats then add acceptance_rate and tokens_per_step."""
        return self._collect(self.stream(prompt, **kw))

    def chat(self, messages, **kw) -> Generation:
        """The chat template applied to messages ([{"role": ..., "content": ...}]), then generate.
        For R1 models the reasoning is forced open with "<think>\\n" (DeepSeek's advice);
        max_thinking_tokens=0 prefills an empty think block to skip reasoning."""
        return self._collect(self.chat_stream(messages, **kw))

    def stream(self, prompt, *, speculative=None, **kw):
        """Like generate(), yielding Pieces (.kind "reasoning" or "answer", .text, .tokens)."""
        spec = parse_speculative(speculative, self)
        seq = self.new_sequence(self.text_prompt(prompt), **kw)
        return _Stream(GenerationRun(seq, self.session, spec))

    def chat_stream(self, messages, *, speculative=None, **kw):
        """Like chat(), yielding Pieces."""
        spec = parse_speculative(speculative, self)
        prompt = self.chat_prompt(messages, thinking_budget(kw.get("max_thinking_tokens"),
                                                            kw.get("reasoning_effort")))
        return _Stream(GenerationRun(self.new_sequence(prompt, **kw), self.session, spec))

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
