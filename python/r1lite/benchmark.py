"""Speed of a loaded model: prefill and decode tokens/s, and decode's share of the machine's read
bandwidth (measured in the same run). Used by `r1lite bench` and tools/bench.py."""

from __future__ import annotations

import statistics
import time

import numpy as np


def decode_bytes_per_token(tensors: dict, cfg: dict) -> int:
    """Bytes of weights one decode step reads: every matrix except the embedding table (one row)
    and the routed experts, of which each MoE layer reads experts_per_token; the embedding counts
    when it doubles as lm_head. An MTP module ("mtp.*", speculative decoding only) is not read.
    `tensors` maps names to (array, format[, scales])."""
    def nbytes(entry):
        return sum(a.nbytes for a in entry if isinstance(a, np.ndarray))
    total = sum(nbytes(t) for name, t in tensors.items()
                if name != "tok_embd" and ".experts." not in name and not name.startswith("mtp."))
    if cfg["tied_embeddings"]:
        total += nbytes(tensors["tok_embd"])
    if cfg.get("num_experts"):
        one_expert = sum(nbytes(tensors[f"layers.{cfg['num_layers'] - 1}.experts.0.{w}"])
                         for w in ("w_gate", "w_up", "w_down"))
        moe_layers = cfg["num_layers"] - cfg["moe_first_layer"]
        total += moe_layers * cfg["experts_per_token"] * one_expert
    return total


def bandwidth(model) -> tuple[float, str, str]:
    """(bytes/s, where, what was measured) to compare decode with: the machine's read bandwidth
    with the model's threads on the CPU, the device's copy bandwidth for a model on a GPU."""
    if model.device_name is None:
        from . import _core

        return (_core.measure_read_bandwidth(1 << 30, model.threads, 5),
                f"{model.threads} threads, {_core.active_isa()}", "read bandwidth")
    return model.copy_bandwidth(1 << 30, 10), model.device_name, "device copy bandwidth (read + write)"


def run(session, vocab_size: int, prefill: int, decode: int, repeats: int = 1, seed: int = 1,
        depth: int = 0) -> dict:
    """Median prefill and decode tok/s of `repeats` rounds (random prompt, greedy decode) through
    a model's Model.session() (or a bare C++ core, as tools/bench.py passes) whose context holds
    max(prefill, depth) + decode tokens; the cache is emptied before each. With depth > prefill
    the cache is filled to depth positions (untimed, 512 at a time) before decoding: decode speed
    at that depth. A CUDA model picks each greedy token on the device (forward_argmax): no logits
    copied back."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, vocab_size, prefill).astype(np.int32)
    filler = rng.integers(0, vocab_size, max(depth - prefill, 0)).astype(np.int32)
    session.reset()
    session.forward(prompt[:1], False)  # warm-up: touch every weight page once (mmap faults)
    prefill_rates, decode_rates = [], []
    step = getattr(session, "forward_argmax", None) or (
        lambda ids: int(session.forward(ids, False).argmax()))
    for _ in range(repeats):
        session.reset()
        t = time.perf_counter()
        logits = session.forward(prompt, False)
        prefill_rates.append(prefill / (time.perf_counter() - t))
        for i in range(0, len(filler), 512):
            logits = session.forward(filler[i:i + 512], False)
        token = int(logits.argmax())
        t = time.perf_counter()
        for _ in range(decode):
            token = step(np.array([token], np.int32))
        decode_rates.append(decode / (time.perf_counter() - t))
    session.reset()
    return {"prefill_tok_s": statistics.median(prefill_rates),
            "decode_tok_s": statistics.median(decode_rates)}
