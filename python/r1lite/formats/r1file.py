"""r1lite's own model file: one .safetensors file whose __metadata__ carries everything needed to
run the model (DESIGN.md "The model file"). Tensors use r1lite's names; a planar block-quantized
tensor is its quant plane (I8 for q8_0, U8 for q4_0) plus `<name>.scale` (F16 [rows, blocks]); a
tensor in one of GGUF's block formats (q4_k, q6_k, ...) is its blocks as U8 [rows, row bytes].

Metadata keys (all strings):
  r1lite.format             "r1lite"
  r1lite.version            format version (FORMAT_VERSION)
  r1lite.config             the normalized config, JSON
  r1lite.formats            {tensor name: a format of the core's table (quant.FORMATS)}, JSON
  r1lite.tokenizer          tokenizer.json text (optional, as are the next four)
  r1lite.tokenizer_config   tokenizer_config.json text
  r1lite.chat_template      a chat template that overrides tokenizer_config's
  r1lite.generation_config  generation_config.json text
  r1lite.model_config       {bos_token_id, eos_token_id} from the source config, JSON
"""

from __future__ import annotations

import json

from ..config import check_normalized
from ..errors import ModelFormatError
from ..quant import BLOCK_FORMATS, FORMATS, QUANT_FORMATS, TABLE
from .safetensors import SafetensorsFile
from .tensors import expected_tensors

FORMAT_NAME = "r1lite"
FORMAT_VERSION = 1

# storage format -> safetensors dtype of its (first) plane
PLANE_DTYPE = {"f32": "F32", "bf16": "BF16", "f16": "F16", "q8_0": "I8", "q4_0": "U8"}
SCALE_SUFFIX = ".scale"


def plane_shapes(fmt: str, shape: tuple) -> list[tuple[str, tuple]]:
    """[(safetensors dtype, shape)] of the planes that store a tensor of logical `shape`."""
    if fmt in BLOCK_FORMATS:
        rows, cols = shape
        block, nbytes = TABLE[fmt]["block"], TABLE[fmt]["block_bytes"]
        if cols % block:
            raise ModelFormatError(f"a {fmt} tensor holds rows of whole {block}-value blocks, not {cols} values")
        return [("U8", (rows, cols // block * nbytes))]
    if fmt not in QUANT_FORMATS:
        return [(PLANE_DTYPE[fmt], tuple(shape))]
    rows, cols = shape
    blocks = -(-cols // 32)
    per_row = blocks * 32 if fmt == "q8_0" else blocks * 16
    return [(PLANE_DTYPE[fmt], (rows, per_row)), ("F16", (rows, blocks))]


def _json_meta(meta: dict, key: str, where: str, required: bool = True):
    if key not in meta:
        if required:
            raise ModelFormatError(f"{where}: metadata lacks '{key}'")
        return None
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"{where}: metadata '{key}' is not valid JSON ({e})") from None


def is_r1lite_file(st: SafetensorsFile) -> bool:
    return st.metadata.get("r1lite.format") == FORMAT_NAME


def load_r1_file(path) -> tuple[dict, dict, object]:
    """(config, {name: (array, fmt[, scales])}, Tokenizer or None) of a model file, the arrays
    being views of the mapped file."""
    st = SafetensorsFile(path)
    where = st.path
    meta = st.metadata
    if not is_r1lite_file(st):
        raise ModelFormatError(
            f"{where}: not an r1lite model file (no r1lite metadata); convert a checkpoint with "
            "`r1lite convert`, or pass a Hugging Face model folder")
    try:
        version = int(meta.get("r1lite.version", ""))
    except ValueError:
        raise ModelFormatError(f"{where}: bad r1lite.version {meta.get('r1lite.version')!r}") from None
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{where}: model file format version {version} is newer than this r1lite reads "
            f"({FORMAT_VERSION}); upgrade r1lite")
    config = check_normalized(_json_meta(meta, "r1lite.config", where), where)
    formats = _json_meta(meta, "r1lite.formats", where)
    if not isinstance(formats, dict):
        raise ModelFormatError(f"{where}: r1lite.formats is not a JSON object")
    tensors = {}
    for name, (shape, kind) in expected_tensors(config).items():
        fmt = formats.get(name)
        if fmt not in FORMATS or (kind == "f32" and fmt != "f32"):
            raise ModelFormatError(f"{where}: tensor '{name}' has no usable format (got {fmt!r})")
        arrays = []
        for plane, (dtype, want) in zip((name, name + SCALE_SUFFIX), plane_shapes(fmt, shape)):
            if plane not in st:
                raise ModelFormatError(f"{where}: tensor '{plane}' is missing")
            if st.dtype(plane) != dtype or st.shape(plane) != want:
                raise ModelFormatError(
                    f"{where}: tensor '{plane}' is {st.dtype(plane)} {list(st.shape(plane))}, "
                    f"expected {dtype} {list(want)} for {fmt}")
            arrays.append(st.array(plane))
        tensors[name] = (arrays[0], fmt, arrays[1]) if len(arrays) == 2 else (arrays[0], fmt)
    return config, tensors, tokenizer_from_metadata(meta, where)


def tokenizer_from_metadata(meta: dict, where: str):
    """The Tokenizer described by r1lite.tokenizer* metadata strings, or None."""
    if "r1lite.tokenizer" not in meta:
        return None
    from ..tokenizer import Tokenizer

    return Tokenizer(meta["r1lite.tokenizer"],
                     tokenizer_config=_json_meta(meta, "r1lite.tokenizer_config", where, False),
                     chat_template=meta.get("r1lite.chat_template"),
                     generation_config=_json_meta(meta, "r1lite.generation_config", where, False),
                     model_config=_json_meta(meta, "r1lite.model_config", where, False),
                     where=where)
