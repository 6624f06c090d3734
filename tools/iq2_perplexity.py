#!/usr/bin/env python3
"""Perplexity of a model quantized with r1lite's i-quant quantizer against the same recipe with
llama.cpp's quantizer (ggml_quantize_chunk in libggml-base, what llama-quantize runs) writing the
i-quant tensors, both under the same importance matrix (r1lite imatrix on a calibration text that
is not the evaluation text). Needs a llama.cpp build (LLAMACPP_HOME or
~/.cache/llama.cpp-peer/build/bin) for the second file.

    python tools/iq2_perplexity.py [MODEL] [--quant iq2_xxs] [--tokens 4096]

MODEL defaults to the demo (SmolLM2-135M, a Q4_1 GGUF: its Q4_1 weights are the reference).
Where llama-quantize is at hand too (a GGUF MODEL), it also writes the recipe itself (--pure,
the embedding and head Q8_0, --imatrix the same file: its IQ4_NL tensors then are weighted by
the imatrix too, which r1lite's IQ4_NL encoder does not do), and a copy of that file with its
i-quant tensors written by r1lite from MODEL's weights separates the i-quant quantizers.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import r1lite
from r1lite.formats import block_quantizers
from r1lite.imatrix import compute_imatrix, write_imatrix
from r1lite.resolve import resolve_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamacpp_peer import bin_dir as llamacpp_dir, ggml_base  # noqa: E402
from perplexity import DEFAULT_TEXT, nll_windows  # noqa: E402

CALIBRATION = "/usr/share/common-licenses/Apache-2.0"
GGML_TYPES = {"iq2_xxs": (16, 66), "iq2_xs": (17, 74), "iq2_s": (22, 82)}  # type id, block bytes


def with_ggml_iquants(lib):
    """quantize_blocks with llama.cpp's quantizer for the i-quants (needs the importance)."""
    ours = block_quantizers.quantize_blocks

    def quantize(fmt, w, threads=None, importance=None):
        if fmt not in GGML_TYPES or importance is None:
            return ours(fmt, w, threads=threads, importance=importance)
        t, nbytes = GGML_TYPES[fmt]
        lib.ggml_quantize_init(t)
        w = np.ascontiguousarray(w, np.float32)
        qw = np.asarray(importance, np.float32).reshape(-1, w.shape[1])
        out = np.zeros((w.shape[0], w.shape[1] // 256 * nbytes), np.uint8)
        per = w.shape[0] // len(qw)
        for g in range(len(qw)):  # one importance row per equal group of rows
            q = np.ascontiguousarray(qw[g])
            lib.ggml_quantize_chunk(t, w[g * per:].ctypes.data, out[g * per:].ctypes.data, 0, per,
                                    w.shape[1], q.ctypes.data)
        return out

    return quantize


def llama_quantize(lib_dir: Path, model: Path, imatrix: Path, out: Path, quant: str) -> Path:
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir))
    subprocess.run([str(lib_dir / "llama-quantize"), "--allow-requantize", "--pure", "--imatrix", str(imatrix),
                    "--token-embedding-type", "q8_0", "--output-tensor-type", "q8_0", str(model), str(out),
                    quant.upper(), "2"], env=env, check=True, capture_output=True)
    return out


def with_our_iquants(llama_file: Path, model: Path, out: Path, quant: str, imatrix: Path) -> Path:
    """llama_file with its i-quant tensors written by r1lite (from model's weights): the rest of
    the bytes llama-quantize's."""
    from r1lite import converter
    from r1lite.recipes import tensor_formats

    source = converter._source

    def mixed(src):
        config, tensors, meta = source(src)
        originals = source(model)[1]
        for name, fmt in tensor_formats(config, quant).items():
            if fmt.startswith("iq2"):
                tensors[name] = originals[name]
        return config, tensors, meta

    converter._source = mixed
    try:
        return r1lite.convert(llama_file, out, quant, imatrix=imatrix, progress=False, allow_requantize=True)
    finally:
        converter._source = source


def perplexity(path, ids, ctx) -> tuple[float, int]:
    m = r1lite.load(path, context=ctx)
    total, count = nll_windows(m.logits, ids, ctx)
    return math.exp(total / count), count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", default="demo")
    ap.add_argument("--quant", default="iq2_xxs")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--calibration-chunks", type=int, default=8)
    args = ap.parse_args()
    src = r1lite.load(args.model, context=args.ctx)
    cal = src.tokenizer.encode(Path(CALIBRATION).read_text())
    im = compute_imatrix(src, cal, chunk=args.ctx, chunks=args.calibration_chunks)
    ids = src.tokenizer.encode(Path(DEFAULT_TEXT).read_text())[:args.tokens]
    lib = ggml_base()
    with tempfile.TemporaryDirectory() as tmp:
        imx = write_imatrix(Path(tmp) / "imatrix.gguf", im)
        files = {"source": args.model}
        kw = dict(progress=False, allow_requantize=True)
        files[f"r1lite {args.quant}, no imatrix"] = r1lite.convert(args.model, Path(tmp) / "plain.r1", args.quant, **kw)
        files[f"r1lite {args.quant} + imatrix"] = r1lite.convert(args.model, Path(tmp) / "ours.r1", args.quant,
                                                                  imatrix=imx, **kw)
        if lib is not None:
            ours = block_quantizers.quantize_blocks
            block_quantizers.quantize_blocks = with_ggml_iquants(lib)
            try:
                files[f"llama.cpp {args.quant} + imatrix"] = r1lite.convert(
                    args.model, Path(tmp) / "ggml.r1", args.quant, imatrix=imx, **kw)
            finally:
                block_quantizers.quantize_blocks = ours
        else:
            print("no llama.cpp build: its quantizer's file is left out", file=sys.stderr)
        bin_dir = llamacpp_dir()
        model = resolve_model(args.model, convert_hub=False)
        if bin_dir is not None and (bin_dir / "llama-quantize").is_file() and Path(model).suffix == ".gguf":
            theirs = llama_quantize(bin_dir, Path(model), imx, Path(tmp) / "llama.gguf", args.quant)
            files[f"llama-quantize --pure {args.quant}"] = theirs
            files[f"  the same, r1lite's {args.quant} tensors"] = with_our_iquants(
                theirs, model, Path(tmp) / "mixed.r1", args.quant, imx)
        for name, path in files.items():
            ppl, count = perplexity(path, ids, args.ctx)
            print(f"{name:36} perplexity {ppl:.4f} ({count} tokens scored, windows of {args.ctx})",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
