#!/usr/bin/env python3
"""Why iq2_quantizers de-shrinks its block scales (its step 5): perplexity of the demo
(SmolLM2-135M, transformers' GGUF loader, f32 torch) with every matrix but ffn_down quantized as
llama-quantize --pure IQ2_XXS --imatrix writes them (IQ4_NL under the imatrix, embedding Q8_0,
through libggml-base), and ffn_down decoded from r1lite's encoder, llama.cpp's, and rescalings of
r1lite's least-squares fit (the fit = the decoded values / DESHRINK). Each over a few
realizations of the weights (dithered by 3% of each row's RMS; seed 0 = undithered): one
realization's perplexity moves by +-1 with the rounding luck, the differences between variants
of the same realization much less. Needs a llama.cpp build (tools/llamacpp_peer.py).

    python tools/iq2_deshrink_study.py [--seeds 0 1 2] [--tokens 4096]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

import gguf
from r1lite.formats import iq2_quantizers
from r1lite.formats.block_quantizers import quantize_blocks
from r1lite.resolve import demo_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamacpp_peer import ggml_base  # noqa: E402

T = gguf.GGMLQuantizationType
BLOCK = {T.IQ4_NL: (32, 18), T.Q8_0: (32, 34), T.IQ2_XXS: (256, 66)}  # values, bytes


def ggml_decoded(lib, t, x: np.ndarray, qw: np.ndarray | None) -> np.ndarray:
    """x quantized by llama.cpp's ggml_quantize_chunk, decoded by the gguf package."""
    values, nbytes = BLOCK[t]
    lib.ggml_quantize_init(int(t))
    x = np.ascontiguousarray(x, np.float32)
    out = np.zeros((x.shape[0], x.shape[1] // values * nbytes), np.uint8)
    q = None if qw is None else np.ascontiguousarray(qw, np.float32)
    lib.ggml_quantize_chunk(int(t), x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1],
                            None if q is None else q.ctypes.data)
    return np.asarray(gguf.quants.dequantize(out, t), np.float32).reshape(x.shape)


def ours_fit(w: np.ndarray, qw: np.ndarray) -> np.ndarray:
    raw = quantize_blocks("iq2_xxs", w, importance=qw)
    q = np.asarray(gguf.quants.dequantize(raw, T.IQ2_XXS), np.float32).reshape(w.shape)
    return q / np.float32(iq2_quantizers.DESHRINK["iq2_xxs"])


def imatrix(model, ids, chunk=512, chunks=8) -> dict[str, np.ndarray]:
    """Mean squared input activation per column of every layer matrix (llama-imatrix's)."""
    sums, hooks = {}, []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name:
            def f(_, inp, name=name):
                a = inp[0][0].double()
                s = sums.setdefault(name, [0, 0])
                s[0] = s[0] + (a * a).sum(0)
                s[1] += len(a)
            hooks.append(mod.register_forward_pre_hook(f))
    with torch.no_grad():
        for c in range(min(chunks, len(ids) // chunk)):
            model(ids[c * chunk:(c + 1) * chunk][None])
    for h in hooks:
        h.remove()
    return {k: (s / n).float().numpy() for k, (s, n) in sums.items()}


def perplexity(model, ids, ctx=512) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - 1, ctx):
            w = ids[s:s + ctx]
            if len(w) < 2:
                break
            logits = model(w[None]).logits[0, :-1].double()
            total += float(torch.nn.functional.cross_entropy(logits, w[1:], reduction="sum"))
            count += len(w) - 1
    return math.exp(total / count)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tokens", type=int, default=4096)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lib = ggml_base()
    if lib is None:
        print("no llama.cpp build (libggml-base.so; LLAMACPP_HOME)", file=sys.stderr)
        return 1
    path = demo_model_path()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                 dtype=torch.float32).eval()
    text = lambda p: tok(Path(p).read_text(), return_tensors="pt").input_ids[0]  # noqa: E731
    im = imatrix(model, text("/usr/share/common-licenses/Apache-2.0"))
    ids = text("/usr/share/common-licenses/GPL-3")[:args.tokens]
    layers = model.model.layers
    with torch.no_grad():  # the rest of llama-quantize's recipe
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and ".layers." in name and "down_proj" not in name:
                w = mod.weight.detach().numpy()
                mod.weight.copy_(torch.from_numpy(ggml_decoded(lib, T.IQ4_NL, w, im[name])))
        e = model.model.embed_tokens.weight
        e.copy_(torch.from_numpy(ggml_decoded(lib, T.Q8_0, e.detach().numpy(), None)))
    W0 = np.stack([layer.mlp.down_proj.weight.detach().numpy().copy() for layer in layers])
    qws = np.stack([im[f"model.layers.{i}.mlp.down_proj"] for i in range(len(layers))])[:, None, :]

    def proj(W, Q, axes):  # importance-weighted projection of Q on W per slice
        return (qws * W * Q).sum(axes, keepdims=True) / (qws * W * W).sum(axes, keepdims=True)

    def show(label, mats):
        with torch.no_grad():
            for layer, m in zip(layers, mats):
                layer.mlp.down_proj.weight.copy_(torch.from_numpy(np.asarray(m, np.float32)))
        print(f"{label:48s} {perplexity(model, ids):8.3f}", flush=True)

    for seed in args.seeds:
        noise = np.random.default_rng(seed).standard_normal(W0.shape) if seed else 0
        W = (W0 + 0.03 * W0.std(axis=2, keepdims=True) * noise).astype(np.float32)
        fit = np.stack([ours_fit(w, q[0]) for w, q in zip(W, qws)])
        show(f"seed {seed}: r1lite's least-squares fit", fit)
        show(f"seed {seed}: r1lite as stored (fit x DESHRINK)", fit * iq2_quantizers.DESHRINK["iq2_xxs"])
        show(f"seed {seed}: fit / its projection, per tensor", fit / proj(W, fit, (1, 2)))
        show(f"seed {seed}: fit / its projection, per row", fit / proj(W, fit, 2))
        show(f"seed {seed}: llama.cpp's quantizer",
             np.stack([ggml_decoded(lib, T.IQ2_XXS, w, q[0]) for w, q in zip(W, qws)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
