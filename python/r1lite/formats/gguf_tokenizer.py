"""The tokenizer of a GGUF file: a `tokenizers` BPE rebuilt from its vocabulary, merges and
pre-tokenizer name, and the tokenizer metadata strings r1file keeps."""

from __future__ import annotations

import json

from ..errors import ModelFormatError, UnsupportedModelError
from .gguf_reader import GGUFFile

# llama.cpp pre-tokenizer names -> how the text is split before byte-level BPE (ARCH.md §9)
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {
    "default": "gpt2", "gpt2": "gpt2", "smollm": "digits+gpt2",
    "qwen2": "qwen2", "deepseek-r1-qwen": "qwen2", "llama-bpe": "llama3", "llama3": "llama3",
}



def _build_tokenizer(g: GGUFFile):
    """A `tokenizers` tokenizer rebuilt from the GGUF vocabulary and merges."""
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors)

    model = g.need("tokenizer.ggml.model")
    if model != "gpt2":
        raise UnsupportedModelError(f"{g.path}: tokenizer model '{model}' is not supported (only byte-level BPE, 'gpt2')")
    pre = g.get("tokenizer.ggml.pre") or "default"
    if pre not in PRE_TOKENIZERS:
        raise UnsupportedModelError(
            f"{g.path}: pre-tokenizer '{pre}' is not supported (supported: {', '.join(PRE_TOKENIZERS)})")
    tokens = list(g.need("tokenizer.ggml.tokens"))
    types = list(g.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in g.need("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    kind = PRE_TOKENIZERS[pre]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=kind in ("gpt2", "digits+gpt2"))
    if kind == "digits+gpt2":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif kind in ("qwen2", "llama3"):
        split = pre_tokenizers.Split(Regex(QWEN2_SPLIT if kind == "qwen2" else LLAMA3_SPLIT),
                                     behavior="isolated", invert=False)
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
        if kind == "qwen2":
            tok.normalizer = normalizers.NFC()
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    # token types: 3 control (special), 4 user-defined (added, not special)
    added = [AddedToken(tokens[i], special=types[i] == 3, normalized=False)
             for i in range(len(tokens)) if types[i] in (3, 4)]
    tok.add_tokens(added)
    bos = g.get("tokenizer.ggml.bos_token_id")
    if g.get("tokenizer.ggml.add_bos_token") and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A $B", special_tokens=[(tokens[bos], int(bos))])
    return tok


def _checked_tokenizer(g: GGUFFile):
    try:
        return _build_tokenizer(g)
    except (ModelFormatError, UnsupportedModelError):
        raise
    except Exception as e:  # tokenizers refuses inconsistent vocabularies, merges, ids
        raise ModelFormatError(f"{g.path}: the tokenizer in the metadata is unusable ({e})") from None




def tokenizer_metadata(g: GGUFFile) -> dict:
    """The tokenizer as r1file keeps it: r1lite.tokenizer (absent without a vocabulary; here the
    built `tokenizers.Tokenizer`, which r1file's writer turns into its JSON text and the loader
    uses as it is: serializing and parsing a 150K vocabulary again costs half a second),
    r1lite.tokenizer_config (bos / eos tokens, chat template), r1lite.model_config (eos id)."""
    tokens = g.get("tokenizer.ggml.tokens") or []
    def token(key):
        i = g.get(key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None
    tok_config = {"bos_token": token("tokenizer.ggml.bos_token_id"),
                  "eos_token": token("tokenizer.ggml.eos_token_id"),
                  "chat_template": g.get("tokenizer.chat_template")}
    meta = {"r1lite.tokenizer": _checked_tokenizer(g) if tokens else None,
            "r1lite.tokenizer_config": json.dumps(tok_config),
            "r1lite.model_config": json.dumps({"eos_token_id": g.get("tokenizer.ggml.eos_token_id")})}
    return {k: v for k, v in meta.items() if v is not None}
