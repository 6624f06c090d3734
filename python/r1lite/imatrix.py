"""Importance matrices (llama.cpp's imatrix): computing one, reading and writing its files, and
the per-column weights the K-quant quantizers take from it.

For every weight matrix: the sum over calibration tokens of each input column's squared
activation (in_sum2) and the number of tokens (counts); a routed expert's over the tokens routed
to it, stacked per layer as llama.cpp's blk.N.ffn_*_exps; MLA's per-head matrices (w_uk_t,
w_uv: llama.cpp's attn_k_b / attn_v_b) per head. The quantizers weight each column by
in_sum2 / counts (its mean squared activation), as llama-quantize --imatrix does.

Files: llama.cpp's GGUF imatrix ("<tensor>.in_sum2" f32 [n_mat, cols], "<tensor>.counts" f32
[n_mat], metadata imatrix.datasets / imatrix.chunk_count / imatrix.chunk_size) is read and
written; the legacy binary one (.dat: per entry name, ncall and the values, already divided by
the token count and multiplied by ncall) is read.
"""

from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .formats.names import gguf_name

_EXPERT = re.compile(r"^layers\.(\d+)\.experts\.(\d+)\.(w_gate|w_up|w_down)$")
_EXPERT_GGUF = {"w_gate": "ffn_gate_exps", "w_up": "ffn_up_exps", "w_down": "ffn_down_exps"}
_MLA_GGUF = {"w_uk_t": "attn_k_b", "w_uv": "attn_v_b"}


def imatrix_name(name: str, config: dict) -> tuple[str, int | None]:
    """(llama.cpp's tensor name, expert index or None) of an r1lite weight matrix; the output
    head (lm_head, or tok_embd when tied) is output.weight."""
    m = _EXPERT.match(name)
    if m:
        return f"blk.{m[1]}.{_EXPERT_GGUF[m[3]]}.weight", int(m[2])
    if name == "lm_head" or (name == "tok_embd" and config.get("tied_embeddings")):
        return "output.weight", None
    if name.startswith("layers."):
        _, idx, short = name.split(".", 2)
        if short in _MLA_GGUF:
            return f"blk.{idx}.{_MLA_GGUF[short]}.weight", None
    return gguf_name(name), None


@dataclass
class Imatrix:
    """entries: llama.cpp tensor name -> (in_sum2 f32 [n_mat, cols], counts f32 [n_mat])."""
    entries: dict[str, tuple[np.ndarray, np.ndarray]]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0

    def weights(self, name: str) -> np.ndarray | None:
        """The quantizers' weights of a llama.cpp tensor: in_sum2 / counts per matrix
        [n_mat, cols] (1 where a matrix saw no token, as llama-quantize does); None if absent."""
        if name not in self.entries:
            return None
        sums, counts = self.entries[name]
        c = counts.reshape(-1, 1).astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, sums / np.where(c > 0, c, 1), np.float32(1)).astype(np.float32)

    def importance_for(self, name: str, shape, config: dict) -> np.ndarray | None:
        """The weights for r1lite's matrix `name` of `shape` [rows, cols] (quantize_blocks'
        importance: [cols] or [groups, cols]), None when the imatrix has no entry for it.
        ValueError when the entry does not fit the matrix."""
        key, expert = imatrix_name(name, config)
        w = self.weights(key)
        if w is None:
            return None
        rows, cols = int(shape[0]), int(shape[-1])
        grouped = expert is not None or name.rsplit(".", 1)[-1] in _MLA_GGUF
        if grouped and w.shape[1] != cols and w.size % cols == 0:  # experts / heads in one row
            w = w.reshape(-1, cols)
        if expert is not None:
            if expert >= len(w):
                raise ValueError(f"imatrix entry {key} has {len(w)} experts; {name} is expert {expert}")
            w = w[expert:expert + 1]
        if w.shape[1] != cols or rows % len(w) or (len(w) > 1 and not grouped):
            raise ValueError(f"imatrix entry {key} ([{len(w)}, {w.shape[1]}]) does not fit {name} "
                             f"[{rows}, {cols}]: an importance matrix of another model?")
        return w[0] if len(w) == 1 else w


# ---------------------------------------------------------------------------------------------
# computing


def stats_to_entries(stats: dict, config: dict, include_output: bool = False) -> dict:
    """The core's activation_stats() ({r1lite name: (sum2 [cols] or [groups, cols], count)}) as
    imatrix entries (llama.cpp names, experts stacked). Like llama-imatrix, only the layers'
    matrices unless include_output."""
    entries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n_experts = int(config.get("num_experts") or 0)
    for name, (sum2, count) in sorted(stats.items()):
        key, expert = imatrix_name(name, config)
        if not key.startswith("blk.") and not (include_output and key == "output.weight"):
            continue
        sum2 = np.atleast_2d(np.asarray(sum2, np.float64))
        if expert is None:
            entries[key] = (sum2.astype(np.float32), np.array([count], np.float32))
            continue
        if key not in entries:
            entries[key] = (np.zeros((n_experts, sum2.shape[1]), np.float32), np.zeros(n_experts, np.float32))
        entries[key][0][expert] = sum2[0]
        entries[key][1][expert] = count
    return entries


def compute_imatrix(model, tokens, *, chunk: int = 512, chunks: int | None = None,
                    bos_id: int | None = None, include_output: bool = False, progress=None) -> Imatrix:
    """An importance matrix of `model` (r1lite.Model) over `tokens`, as llama-imatrix computes
    one: whole chunks of `chunk` tokens (at most `chunks`), each from an empty cache, its first
    token replaced by bos_id when given."""
    tokens = [int(t) for t in tokens]
    n = len(tokens) // chunk
    if chunks is not None:
        n = min(n, int(chunks))
    if n < 1:
        raise ValueError(f"the text has {len(tokens)} tokens, fewer than one chunk of {chunk}")
    core = model._core
    core.record_activations(True)
    try:
        for i in range(n):
            ids = tokens[i * chunk:(i + 1) * chunk]
            if bos_id is not None:
                ids[0] = bos_id
            model.logits(ids)
            if progress:
                progress(i + 1, n)
        stats = core.activation_stats()
    finally:
        core.record_activations(False)
    return Imatrix(stats_to_entries(stats, model.config, include_output), chunk_count=n, chunk_size=chunk)


# ---------------------------------------------------------------------------------------------
# files

_GGUF_STRING, _GGUF_ARRAY, _GGUF_U32 = 8, 9, 4


def write_imatrix(path, im: Imatrix) -> Path:
    """Write llama.cpp's GGUF imatrix file (tensors in name order, as llama-imatrix does)."""
    def s(text: str) -> bytes:
        b = text.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    kv = [s("general.type") + struct.pack("<I", _GGUF_STRING) + s("imatrix"),
          s("imatrix.datasets") + struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_STRING, len(im.datasets))
          + b"".join(s(d) for d in im.datasets),
          s("imatrix.chunk_count") + struct.pack("<II", _GGUF_U32, im.chunk_count),
          s("imatrix.chunk_size") + struct.pack("<II", _GGUF_U32, im.chunk_size)]
    tensors = []
    for name in sorted(im.entries):
        sums, counts = im.entries[name]
        n_mat = len(counts)
        tensors.append((name + ".in_sum2", np.ascontiguousarray(sums, np.float32).reshape(n_mat, -1)))
        tensors.append((name + ".counts", np.ascontiguousarray(counts, np.float32).reshape(n_mat, 1)))
    infos, offset = [], 0
    for name, arr in tensors:  # dims innermost first, type 0 (F32), offsets 32-aligned
        infos.append(s(name) + struct.pack("<I", 2) + struct.pack("<QQ", arr.shape[1], arr.shape[0])
                     + struct.pack("<IQ", 0, offset))
        offset += -(-arr.nbytes // 32) * 32
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
    path = Path(path)
    with open(path, "wb") as f:
        f.write(head + b"\0" * (-len(head) % 32))
        for _, arr in tensors:
            f.write(arr.tobytes() + b"\0" * (-arr.nbytes % 32))
    return path


def read_imatrix(path) -> Imatrix:
    """An imatrix file: llama.cpp's GGUF format or its legacy binary one. ValueError naming
    the problem for a file that is neither or whose entries do not add up."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such imatrix file")
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        im = _read_gguf(path) if magic == b"GGUF" else _read_legacy(path)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid imatrix file ({e})") from None
    for name, (sums, counts) in im.entries.items():
        if not (np.isfinite(sums).all() and np.isfinite(counts).all()) or (sums < 0).any() or (counts < 0).any():
            raise ValueError(f"{path}: imatrix entry {name} has negative or non-finite values")
    return im


def _read_gguf(path: Path) -> Imatrix:
    from .errors import ModelFormatError
    from .formats.gguf_reader import GGUFFile

    try:
        g = GGUFFile(path)
    except ModelFormatError as e:
        raise ValueError(str(e)) from None
    sums, counts = {}, {}
    for name in g.tensors:
        if name.endswith(".in_sum2"):
            sums[name[:-len(".in_sum2")]] = name
        elif name.endswith(".counts"):
            counts[name[:-len(".counts")]] = name
    if not sums:
        raise ValueError("no <tensor>.in_sum2 entries")
    entries = {}
    for key in sorted(set(sums) | set(counts)):
        if key not in sums or key not in counts:
            raise ValueError(f"{key}: in_sum2 and counts do not come in pairs")
        if g.format_of(sums[key]) != "f32" or g.format_of(counts[key]) != "f32":
            raise ValueError(f"{key}: in_sum2 and counts must be F32")
        s, c = g.f32(sums[key]), g.f32(counts[key]).reshape(-1)
        s = s.reshape(len(c), -1) if s.size % max(len(c), 1) == 0 and len(c) else None
        if s is None:
            raise ValueError(f"{key}: {g.tensors[sums[key]].shape} sums do not split into "
                             f"{len(c)} matrices")
        entries[key] = (s.astype(np.float32), np.rint(c).astype(np.float32))
    datasets = g.get("imatrix.datasets", [])
    return Imatrix(entries, list(datasets) if isinstance(datasets, (list, tuple)) else [],
                   int(g.get("imatrix.chunk_count", 0)), int(g.get("imatrix.chunk_size", 0)))


def _read_legacy(path: Path) -> Imatrix:
    """llama.cpp's legacy imatrix.dat: int32 n_entries, then per entry int32 name length, name,
    int32 ncall, int32 nval, f32 values[nval] (mean squares times ncall); optionally int32
    chunk count and the dataset name. Returned with counts = [ncall], so weights() divides
    by ncall as llama-quantize does."""
    data = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return vals

    (n,) = take("<i")
    if n < 1 or n > len(data) // 12:
        raise ValueError(f"entry count {n}")
    entries = {}
    for _ in range(n):
        (ln,) = take("<i")
        if ln < 1 or pos + ln > len(data):
            raise ValueError("bad name length")
        name = data[pos:pos + ln].decode("utf-8")
        pos += ln
        ncall, nval = take("<ii")
        if nval < 1 or pos + 4 * nval > len(data):
            raise ValueError(f"{name}: bad value count {nval}")
        vals = np.frombuffer(data, np.float32, nval, pos).copy()
        pos += 4 * nval
        entries[name] = (vals.reshape(1, -1), np.array([max(ncall, 0)], np.float32))
    chunks, datasets = 0, []
    if pos + 4 <= len(data):
        (chunks,) = take("<i")
        if pos + 4 <= len(data):
            (ln,) = take("<i")
            if 0 < ln <= len(data) - pos:
                datasets.append(data[pos:pos + ln].decode("utf-8", "replace"))
    return Imatrix(entries, datasets, chunks, 0)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
