"""`r1lite convert`: a checkpoint into r1lite's model file (formats/r1file.py), tensor by tensor.

Memory stays bounded by the largest tensor: the header (names, formats, shapes, offsets) is known
before any data is computed, so each tensor is read, encoded and written at its offset in turn.
The file is written under a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

from .formats.r1file import FORMAT_NAME, FORMAT_VERSION, SCALE_SUFFIX, plane_shapes
from .formats.tensors import as_f32, expected_tensors, materialize
from .quant import BLOCK_FORMATS, FLOAT_FORMATS, encode
from .recipes import GGUF_EQUIVALENT, RECIPES, tensor_formats, wants_imatrix
from .resolve import resolve_model

NP_DTYPES = {"F32": np.float32, "BF16": np.uint16, "F16": np.float16, "I8": np.int8, "U8": np.uint8}


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _source(src: Path):
    """(config, {name: (array, fmt)}, metadata strings) of a source checkpoint."""
    from .formats.gguf import is_gguf, load_gguf
    from .formats.hf import load_hf_folder

    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or folder")
    if is_gguf(src):
        config, tensors, meta = load_gguf(src)
        if "r1lite.tokenizer" in meta:  # built from the GGUF vocabulary: kept as its JSON text
            meta["r1lite.tokenizer"] = meta["r1lite.tokenizer"].to_str()
        return config, tensors, meta
    if not src.is_dir():
        raise ValueError(f"{src}: expected a Hugging Face model folder or a GGUF file to convert")
    config, tensors, raw = load_hf_folder(src, lazy=True)
    meta = {}
    for key, name in (("r1lite.tokenizer", "tokenizer.json"),
                      ("r1lite.tokenizer_config", "tokenizer_config.json"),
                      ("r1lite.chat_template", "chat_template.jinja"),
                      ("r1lite.generation_config", "generation_config.json")):
        text = _read_text(src / name)
        if text is not None:
            meta[key] = text
    meta["r1lite.model_config"] = json.dumps(
        {k: raw.get(k) for k in ("bos_token_id", "eos_token_id") if k in raw})
    return config, tensors, meta


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = max(total, 1), 0, enabled

    def step(self, nbytes: int, name: str) -> None:
        self.done += nbytes
        if self.enabled:
            frac = self.done / self.total
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r[{bar:30}] {100 * frac:5.1f}% {name[:40]:40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def convert(src, out, quant: str = "q8_0", *, progress: bool | None = None,
            allow_requantize: bool = False, imatrix=None) -> Path:
    """Write the model at `src` (a Hugging Face folder or a GGUF file) to `out` with its matrices
    as the recipe `quant` says (recipes.RECIPES: a float format, r1lite's q8_0 / q4_0, or one of
    llama.cpp's K-quant mixes such as q4_k_m); norms and biases stay f32. A tensor the source
    already holds in the chosen format is copied as it is. Quantizing tensors the source holds
    quantized in another format rounds twice (a Q4_1 GGUF to q4_0 loses more than either): as
    llama-quantize does, that needs allow_requantize=True (--allow-requantize); a float target
    (f16, f32) is always allowed. imatrix: an importance matrix (a file path, llama.cpp's GGUF
    imatrix or legacy .dat, or an r1lite.imatrix.Imatrix) the K-quant quantizers weight their
    error by, as llama-quantize --imatrix; matrices it lacks are quantized without it (with a
    warning naming them). Returns the output path."""
    if quant not in RECIPES:
        raise ValueError(f"unknown quantization {quant!r} (choose from {', '.join(RECIPES)})")
    config, tensors, meta = _source(resolve_model(src, convert_hub=False))
    formats = tensor_formats(config, quant)
    if not allow_requantize:
        _refuse_requantizing(src, tensors, formats)
    importance = _importance(imatrix, config, formats) if imatrix is not None else {}
    if imatrix is None and wants_imatrix(quant):
        from .imatrix import warn

        warn(f"--quant {quant} writes 2-bit i-quants without an importance matrix: expect a much "
             f"worse model (llama-quantize refuses to); make one with `r1lite imatrix MODEL "
             f"TEXT` and pass it with --imatrix")

    def encoded(name):
        arr, fmt = materialize(tensors[name])[:2]
        if fmt == formats[name] and fmt in BLOCK_FORMATS:
            return (np.ascontiguousarray(arr),)
        return encode(as_f32(arr, fmt), formats[name], importance.get(name))

    return write_model_file(out, config, formats, encoded, meta, progress=progress)


def _importance(imatrix, config: dict, formats: dict) -> dict:
    """{tensor name: quantize_blocks' importance} for the tensors an importance matrix weights
    (K-quant formats); ValueError if an entry does not fit its tensor, a warning naming the
    K-quant matrices it lacks (the token embedding, which no matmul reads, is not expected)."""
    from .formats.block_quantizers import _WEIGHTED
    from .imatrix import Imatrix, read_imatrix, warn

    im = imatrix if isinstance(imatrix, Imatrix) else read_imatrix(imatrix)
    shapes = {name: shape for name, (shape, _kind) in expected_tensors(config).items()}
    out, missing = {}, []
    for name, fmt in formats.items():
        if fmt not in _WEIGHTED:
            continue
        qw = im.importance_for(name, shapes[name], config)
        if qw is not None:
            out[name] = qw
        elif name != "tok_embd" or config.get("tied_embeddings"):
            missing.append(name)
    if not out:
        raise ValueError("the importance matrix has no entry for any matrix of this model: "
                         "one of another model?")
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        warn(f"the importance matrix has no entry for {len(missing)} matrices, quantized without "
             f"it: {shown}")
    return out


def _refuse_requantizing(src, tensors: dict, formats: dict) -> None:
    """ValueError when a tensor held quantized would be quantized again in another format."""
    twice = {}
    for name, fmt in formats.items():
        entry = tensors[name]
        held = entry[1] if isinstance(entry, tuple) else None  # lazy tensors: a float checkpoint
        same = GGUF_EQUIVALENT.get(fmt, fmt) == held  # planar q8_0 from GGUF's Q8_0: the same values
        if held not in (None, *FLOAT_FORMATS) and fmt not in FLOAT_FORMATS and not same:
            twice[held] = twice.get(held, 0) + 1
    if twice:
        held = ", ".join(f"{n} tensors in {f}" for f, n in twice.items())
        raise ValueError(f"{src}: already quantized ({held}); quantizing it again rounds twice and "
                         "loses more than converting the original checkpoint. Pass --allow-requantize "
                         "(allow_requantize=True) to do it anyway, or convert to f16.")


def write_model_file(out, config: dict, formats: dict, encoded, meta: dict, *,
                     progress: bool | None = None) -> Path:
    """Write r1lite's model file: `formats` maps every tensor name to its format, and
    encoded(name) gives its planes as quant.encode does ((values,) or (quants, _, scales)), one
    tensor at a time. Written under a temporary name and renamed when complete."""
    out = Path(out)
    shapes = {name: shape for name, (shape, _kind) in expected_tensors(config).items()}
    # The layout: every plane's dtype and shape, 8-byte-wide dtypes first so each stays aligned.
    planes = []
    for name, fmt in formats.items():
        for plane, (dtype, pshape) in zip((name, name + SCALE_SUFFIX), plane_shapes(fmt, shapes[name])):
            planes.append((plane, dtype, pshape))
    planes.sort(key=lambda p: -np.dtype(NP_DTYPES[p[1]]).itemsize)
    header, offset = {}, 0
    for plane, dtype, pshape in planes:
        nbytes = int(np.prod(pshape)) * np.dtype(NP_DTYPES[dtype]).itemsize
        header[plane] = {"dtype": dtype, "shape": list(pshape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    meta = {**meta, "r1lite.format": FORMAT_NAME, "r1lite.version": str(FORMAT_VERSION),
            "r1lite.config": json.dumps(config), "r1lite.formats": json.dumps(formats)}
    header_bytes = json.dumps({"__metadata__": meta, **header}, ensure_ascii=False).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    data_start = 8 + len(header_bytes)

    tmp = out.with_name(out.name + ".partial")
    bar = _Progress(offset, sys.stderr.isatty() if progress is None else progress)
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(header_bytes)))
            f.write(header_bytes)
            f.truncate(data_start + offset)
            for name in formats:
                planes_of = encoded(name)
                for plane, data in ((name, planes_of[0]),
                                    (name + SCALE_SUFFIX, planes_of[2] if len(planes_of) == 3 else None)):
                    if data is None:
                        continue
                    want = header[plane]
                    begin, end = want["data_offsets"]
                    if list(np.shape(data)) != want["shape"] or data.nbytes != end - begin:
                        raise ValueError(f"{plane}: {data.dtype} plane of shape {list(np.shape(data))}, "
                                         f"expected {want['dtype']} {want['shape']}")
                    f.seek(data_start + want["data_offsets"][0])
                    f.write(np.ascontiguousarray(data).tobytes())
                    bar.step(data.nbytes, name)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return out
