"""GGUF files (llama.cpp's format), read with the `gguf` package: config and tokenizer from the
metadata, tensors dequantized to f32 with gguf's own dequantizers, names and layouts mapped into
r1lite's scheme."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..config import check_normalized, normalize_hf_config
from ..errors import ModelFormatError, UnsupportedModelError
from . import mla
from .names import gguf_name
from .tensors import expected_tensors

ARCHITECTURES = ("llama", "qwen2", "deepseek2")
# GGML types r1lite dequantizes (gguf.GGMLQuantizationType names)
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                   "Q4_K", "Q5_K", "Q6_K")

# llama.cpp pre-tokenizer names -> how the text is split before byte-level BPE (ARCH.md §9)
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {
    "default": "gpt2", "gpt2": "gpt2", "smollm": "digits+gpt2",
    "qwen2": "qwen2", "deepseek-r1-qwen": "qwen2", "llama-bpe": "llama3", "llama3": "llama3",
}


def _require_gguf():
    try:
        import gguf
    except ImportError:
        raise ImportError("reading GGUF files needs the gguf package: pip install gguf") from None
    return gguf


# GGUF metadata value types (llama.cpp's gguf.h) -> bytes of one value; 8: string, 9: array
SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9


def check_layout(path: str) -> None:
    """Walk a GGUF file's header (metadata and tensor infos) checking every count and length
    against the bytes left, before the gguf package reads it: its reader trusts them, and a
    corrupt count makes it loop or allocate without end. ModelFormatError names the problem."""
    import mmap
    import os
    import struct

    size = os.path.getsize(path)
    if size < 24:
        raise ModelFormatError(f"{path}: {size} bytes is too short for a GGUF file")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        pos = 0

        def take(fmt: str, what: str):
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                raise ModelFormatError(f"{path}: truncated in {what} (offset {pos})")
            value = struct.unpack_from(fmt, m, pos)
            pos += n
            return value[0] if len(value) == 1 else value

        def skip_string(what: str):
            nonlocal pos
            length = take("<Q", what)
            if length > size - pos:
                raise ModelFormatError(f"{path}: {what} claims {length} bytes, {size - pos} are left")
            pos += length

        magic, version = take("<4sI", "the header")
        if magic != b"GGUF" or version not in (2, 3):
            raise ModelFormatError(f"{path}: not a GGUF file of version 2 or 3")
        n_tensors, n_kv = take("<QQ", "the header")
        if n_kv > (size - pos) // 12 or n_tensors > (size - pos) // 24:
            raise ModelFormatError(f"{path}: {n_kv} metadata entries / {n_tensors} tensors cannot fit")
        for i in range(n_kv):
            skip_string(f"metadata key {i}")
            vtype = take("<I", f"metadata entry {i}")
            count, etype = 1, vtype
            if vtype == ARRAY:
                etype, count = take("<IQ", f"metadata array {i}")
            if etype == STRING:
                if count > (size - pos) // 8:
                    raise ModelFormatError(f"{path}: metadata entry {i}: {count} strings cannot fit")
                for _ in range(count):
                    skip_string(f"a string of metadata entry {i}")
            elif etype in SCALAR_BYTES:
                if count * SCALAR_BYTES[etype] > size - pos:
                    raise ModelFormatError(f"{path}: metadata entry {i}: {count} values cannot fit")
                pos += count * SCALAR_BYTES[etype]
            else:
                raise ModelFormatError(f"{path}: metadata entry {i} has unknown type {etype}")
        for i in range(n_tensors):
            skip_string(f"tensor info {i}")
            n_dims = take("<I", f"tensor info {i}")
            if not 1 <= n_dims <= 4:
                raise ModelFormatError(f"{path}: tensor info {i} has {n_dims} dimensions")
            dims = take(f"<{n_dims}Q", f"tensor info {i}")
            dims = (dims,) if n_dims == 1 else dims
            count = 1
            for d in dims:
                count *= d
            if count > 8 * size:  # no GGML type packs more than 8 values into a byte
                raise ModelFormatError(f"{path}: tensor info {i} has shape {list(dims)}, larger than the file")
            take("<IQ", f"tensor info {i}")


class GGUFFile:
    def __init__(self, path):
        gguf = _require_gguf()
        self.path = str(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        check_layout(self.path)
        try:
            self.reader = gguf.GGUFReader(self.path)
        except FileNotFoundError:
            raise
        except Exception as e:  # the reader raises ValueError/IndexError/... on bad bytes
            raise ModelFormatError(f"{self.path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, key, default=None):
        field = self.reader.fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception as e:
            raise ModelFormatError(f"{self.path}: metadata '{key}' is unreadable ({e})") from None

    def need(self, key):
        value = self.get(key)
        if value is None:
            raise ModelFormatError(f"{self.path}: metadata lacks '{key}'")
        return value

    def f32(self, name: str) -> np.ndarray:
        """A tensor as f32 in PyTorch's [out, in] order."""
        gguf = _require_gguf()
        t = self.tensors[name]
        kind = t.tensor_type.name
        if kind not in SUPPORTED_TYPES:
            raise UnsupportedModelError(
                f"{self.path}: tensor '{name}' has GGML type {kind}, which r1lite does not read "
                f"(supported: {', '.join(SUPPORTED_TYPES)})")
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims innermost first
        try:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as e:
            raise ModelFormatError(f"{self.path}: tensor '{name}' does not decode ({e})") from None
        return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)


def _config(g: GGUFFile) -> dict:
    arch = g.need("general.architecture")
    if arch not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"{g.path}: GGUF architecture '{arch}' is not supported (supported: {', '.join(ARCHITECTURES)})")
    if arch == "deepseek2":
        return normalize_hf_config(_deepseek2_as_hf(g), str(g.path))
    heads = int(g.need(f"{arch}.attention.head_count"))
    hidden = int(g.need(f"{arch}.embedding_length"))
    tokens = g.get("tokenizer.ggml.tokens") or []
    vocab = int(g.get(f"{arch}.vocab_size") or len(tokens) or g.tensors["token_embd.weight"].shape[1])
    scaling = g.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise UnsupportedModelError(f"{g.path}: rope scaling '{scaling}' is not supported")
    ctx = int(g.get(f"{arch}.context_length") or 4096)
    head_dim = int(g.get(f"{arch}.attention.key_length") or hidden // heads)
    extra = {}
    if "rope_freqs.weight" in g.tensors:
        # llama.cpp's converter stores llama3 rope scaling as one divisor per frequency
        # (ARCH.md §8 in that form); the core divides its inverse frequencies by them.
        factors = g.f32("rope_freqs.weight").reshape(-1)
        if factors.size != head_dim // 2 or not np.all(np.isfinite(factors) & (factors > 0)):
            raise ModelFormatError(f"{g.path}: tensor 'rope_freqs.weight' must hold {head_dim // 2} "
                                   f"positive factors, got {factors.size} values")
        extra["rope_freq_factors"] = [float(f) for f in factors]
    return {
        "architecture": arch,
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_layers": int(g.need(f"{arch}.block_count")),
        "num_heads": heads,
        "num_kv_heads": int(g.get(f"{arch}.attention.head_count_kv") or heads),
        "head_dim": head_dim,
        "intermediate_size": int(g.need(f"{arch}.feed_forward_length")),
        "norm_eps": float(g.get(f"{arch}.attention.layer_norm_rms_epsilon") or 1e-6),
        "qkv_bias": "blk.0.attn_q.bias" in g.tensors,
        "tied_embeddings": "output.weight" not in g.tensors,
        "max_position_embeddings": ctx,
        "context": ctx,
        "rope_kind": "default",
        "rope_theta": float(g.get(f"{arch}.rope.freq_base") or 10000.0),
        **extra,
    }


# llama.cpp's expert_gating_func values
GATING_SOFTMAX, GATING_SIGMOID = 1, 2


def _deepseek2_as_hf(g: GGUFFile) -> dict:
    """The Hugging Face config that llama.cpp's converter turned into this deepseek2 metadata, so
    that one normalization (config.py) serves both. The converter writes MLA as MQA: key_length is
    kv_lora_rank + rope dims, the per-head sizes are in key_length_mla / value_length_mla (older
    files: key_length / value_length themselves). YaRN keeps only yarn_log_multiplier
    (0.1·mscale_all_dim): llama.cpp takes mscale = mscale_all_dim, as every DeepSeek release has."""
    a = "deepseek2"
    dr = int(g.need(f"{a}.rope.dimension_count"))
    key_mla = g.get(f"{a}.attention.key_length_mla")
    value_mla = g.get(f"{a}.attention.value_length_mla")
    if key_mla is None:
        key_mla, value_mla = g.need(f"{a}.attention.key_length"), g.need(f"{a}.attention.value_length")
    heads = int(g.need(f"{a}.attention.head_count"))
    tokens = g.get("tokenizer.ggml.tokens") or []
    sigmoid = int(g.get(f"{a}.expert_gating_func") or GATING_SOFTMAX) == GATING_SIGMOID
    groups = int(g.get(f"{a}.expert_group_count") or 1)
    cfg = {
        "architectures": ["DeepseekV3ForCausalLM" if sigmoid else "DeepseekV2ForCausalLM"],
        "vocab_size": int(g.get(f"{a}.vocab_size") or len(tokens) or g.tensors["token_embd.weight"].shape[1]),
        "hidden_size": int(g.need(f"{a}.embedding_length")),
        "num_hidden_layers": int(g.need(f"{a}.block_count")),
        "num_attention_heads": heads,
        "intermediate_size": int(g.get(f"{a}.feed_forward_length") or 0),
        "rms_norm_eps": float(g.get(f"{a}.attention.layer_norm_rms_epsilon") or 1e-6),
        "max_position_embeddings": int(g.get(f"{a}.context_length") or 4096),
        "tie_word_embeddings": "output.weight" not in g.tensors,
        "rope_theta": float(g.get(f"{a}.rope.freq_base") or 10000.0),
        "q_lora_rank": int(g.get(f"{a}.attention.q_lora_rank") or 0) or None,
        "kv_lora_rank": int(g.need(f"{a}.attention.kv_lora_rank")),
        "qk_rope_head_dim": dr,
        "qk_nope_head_dim": int(key_mla) - dr,
        "v_head_dim": int(value_mla),
        "rope_interleave": True,  # llama.cpp's deepseek2 rope pairs adjacent channels
        "n_routed_experts": int(g.get(f"{a}.expert_count") or 0),
        "n_shared_experts": int(g.get(f"{a}.expert_shared_count") or 0),
        "num_experts_per_tok": int(g.get(f"{a}.expert_used_count") or 0),
        "moe_intermediate_size": int(g.get(f"{a}.expert_feed_forward_length") or 0),
        "first_k_dense_replace": int(g.get(f"{a}.leading_dense_block_count") or 0),
        "n_group": groups,
        "topk_group": int(g.get(f"{a}.expert_group_used_count") or 1),
        "routed_scaling_factor": float(g.get(f"{a}.expert_weights_scale") or 1.0),
        "norm_topk_prob": bool(g.get(f"{a}.expert_weights_norm") or False),
        "scoring_func": "sigmoid" if sigmoid else "softmax",
        "topk_method": "noaux_tc" if sigmoid else ("group_limited_greedy" if groups > 1 else "greedy"),
    }
    scaling = g.get(f"{a}.rope.scaling.type")
    if scaling == "yarn":
        mscale = float(g.get(f"{a}.rope.scaling.yarn_log_multiplier") or 0.0) / 0.1
        cfg["rope_scaling"] = {
            "type": "yarn", "factor": float(g.need(f"{a}.rope.scaling.factor")),
            "original_max_position_embeddings": int(g.need(f"{a}.rope.scaling.original_context_length")),
            "beta_fast": float(g.get(f"{a}.rope.scaling.yarn_beta_fast") or 32.0),
            "beta_slow": float(g.get(f"{a}.rope.scaling.yarn_beta_slow") or 1.0),
            "mscale": mscale, "mscale_all_dim": mscale}
    elif scaling not in (None, "none"):
        raise UnsupportedModelError(f"{g.path}: rope scaling '{scaling}' is not supported")
    return cfg


def _deepseek2_tensor(g: GGUFFile, config: dict, name: str, stacked: dict) -> np.ndarray:
    """An r1lite tensor of a deepseek2 file: experts cut from the stacked [E, out, in] tensors
    (`stacked` caches the current layer's three), W_UKᵀ / W_UV from attn_k_b / attn_v_b (or from attn_kv_b in
    files written before llama.cpp split it), rope rows in rotate-half order (formats/mla.py)."""
    layer, short = (name.split(".", 2)[1:] if name.startswith("layers.") else (None, name))
    h, c = config["num_heads"], config["kv_lora_rank"]
    dn, dr, dv = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
    if short.startswith("experts."):
        _, e, what = short.split(".")
        gname = f"blk.{layer}.ffn_{what[2:]}_exps.weight"
        if gname not in stacked:
            if stacked.get("layer") != layer:
                stacked.clear()  # one layer's experts at a time
                stacked["layer"] = layer
            stacked[gname] = _need_tensor(g, gname)
        return stacked[gname][int(e)]
    if short in ("w_uk_t", "w_uv"):
        split = f"blk.{layer}.attn_{'k' if short == 'w_uk_t' else 'v'}_b.weight"
        if split in g.tensors:
            arr = _need_tensor(g, split)
            return arr.reshape(h * c, dn) if short == "w_uk_t" else arr.reshape(h * dv, c)
        kv_b = _need_tensor(g, f"blk.{layer}.attn_kv_b.weight")
        return mla.split_kv_b(kv_b, h, dn, dv, "uk_t" if short == "w_uk_t" else "uv")
    arr = _need_tensor(g, gguf_name(name))
    if short in ("wq", "wq_b"):
        arr = mla.reorder_rope_rows(arr, h, dn + dr, dr)
    elif short == "wkv_a":
        arr = mla.reorder_rope_rows(arr, 1, c + dr, dr)
    return arr


def _need_tensor(g: GGUFFile, gname: str) -> np.ndarray:
    if gname not in g.tensors:
        raise ModelFormatError(f"{g.path}: tensor '{gname}' is missing")
    return g.f32(gname)


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter reorders each llama q/k head's rows from rotate_half pairs (j, j+d/2)
    to adjacent pairs (2j, 2j+1) for its rope kernel; put them back (rows of head h: [h*d, h*d+d))."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tokenizer_json(g: GGUFFile) -> str:
    """A `tokenizers` tokenizer (as JSON text) rebuilt from the GGUF vocabulary and merges."""
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
    return tok.to_str()


def _checked_tokenizer_json(g: GGUFFile) -> str:
    try:
        return _tokenizer_json(g)
    except (ModelFormatError, UnsupportedModelError):
        raise
    except Exception as e:  # tokenizers refuses inconsistent vocabularies, merges, ids
        raise ModelFormatError(f"{g.path}: the tokenizer in the metadata is unusable ({e})") from None


def load_gguf(path) -> tuple[dict, dict, dict]:
    """(config, {r1lite name: (f32 array, "f32")}, tokenizer metadata strings as r1file keeps them)."""
    g = GGUFFile(path)
    config = check_normalized(_config(g), str(g.path))
    tensors, stacked = {}, {}
    deepseek = config.get("attention") == "mla"
    for name, (shape, kind) in expected_tensors(config).items():
        arr = _deepseek2_tensor(g, config, name, stacked) if deepseek else _need_tensor(g, gguf_name(name))
        if arr.shape != shape:
            raise ModelFormatError(f"{g.path}: tensor for '{name}' has shape {list(arr.shape)}, "
                                   f"expected {list(shape)}")
        if config["architecture"] == "llama" and name.split(".")[-1] in ("wq", "bq", "wk", "bk"):
            heads = config["num_heads"] if name.endswith(("wq", "bq")) else config["num_kv_heads"]
            arr = _unpermute_rope_rows(arr, heads)
        tensors[name] = (arr, "f32")
    tokens = g.get("tokenizer.ggml.tokens") or []
    def token(key):
        i = g.get(key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None
    tok_config = {"bos_token": token("tokenizer.ggml.bos_token_id"),
                  "eos_token": token("tokenizer.ggml.eos_token_id"),
                  "chat_template": g.get("tokenizer.chat_template")}
    meta = {"r1lite.tokenizer": _checked_tokenizer_json(g) if tokens else None,
            "r1lite.tokenizer_config": json.dumps(tok_config),
            "r1lite.model_config": json.dumps({"eos_token_id": g.get("tokenizer.ggml.eos_token_id")})}
    return config, tensors, {k: v for k, v in meta.items() if v is not None}


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False
