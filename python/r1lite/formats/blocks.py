"""GGUF's block formats on the Python side: each block's fields as a numpy structured dtype (the
layouts of csrc/core/blocks.h, ggml's definitions), for the converter's quantizers and the tests.
The core's format table (_core.weight_formats()) is the authority on names, block sizes and
bytes; tests/test_block_formats.py checks these dtypes against it."""

from __future__ import annotations

import numpy as np

QK = 256  # values per K-quant super-block

BLOCK_DTYPES = {
    "gguf_q8_0": np.dtype([("d", "<f2"), ("qs", "i1", 32)]),
    "gguf_q4_0": np.dtype([("d", "<f2"), ("qs", "u1", 16)]),
    "q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)]),
    "q5_0": np.dtype([("d", "<f2"), ("qh", "u1", 4), ("qs", "u1", 16)]),
    "q5_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qh", "u1", 4), ("qs", "u1", 16)]),
    "q2_k": np.dtype([("scales", "u1", 16), ("qs", "u1", 64), ("d", "<f2"), ("dmin", "<f2")]),
    "q3_k": np.dtype([("hmask", "u1", 32), ("qs", "u1", 64), ("scales", "u1", 12), ("d", "<f2")]),
    "q4_k": np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qs", "u1", 128)]),
    "q5_k": np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qh", "u1", 32),
                      ("qs", "u1", 128)]),
    "q6_k": np.dtype([("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2")]),
    "iq4_nl": np.dtype([("d", "<f2"), ("qs", "u1", 16)]),
    "iq4_xs": np.dtype([("d", "<f2"), ("scales_h", "<u2"), ("scales_l", "u1", 4), ("qs", "u1", 128)]),
    "iq2_xxs": np.dtype([("d", "<f2"), ("qs", "<u2", 32)]),
    "iq2_xs": np.dtype([("d", "<f2"), ("qs", "<u2", 32), ("scales", "u1", 8)]),
    "iq2_s": np.dtype([("d", "<f2"), ("qs", "u1", 32), ("signs", "u1", 32), ("qh", "u1", 8), ("scales", "u1", 8)]),
    "iq1_s": np.dtype([("d", "<f2"), ("qs", "u1", 32), ("qh", "<u2", 8)]),
    # no d field: its f16 bits are the top nibbles of the scales words (set_iq1m_scale)
    "iq1_m": np.dtype([("qs", "u1", 32), ("qh", "u1", 16), ("scales", "<u2", 4)]),
    "iq3_xxs": np.dtype([("d", "<f2"), ("qs", "u1", 64), ("signs_scales", "<u4", 8)]),
    "iq3_s": np.dtype([("d", "<f2"), ("qs", "u1", 64), ("qh", "u1", 8), ("signs", "u1", 32), ("scales", "u1", 4)]),
}


def set_iq1m_scale(blocks: np.ndarray, d) -> None:
    """Writes the f16 scale(s) d into iq1_m blocks (a structured array of BLOCK_DTYPES["iq1_m"]):
    nibble w of d's bits goes to the top nibble of scales word w; the 3-bit scales stay."""
    bits = np.broadcast_to(np.asarray(d, np.float16), blocks.shape).view(np.uint16).astype(np.uint16)
    for w in range(4):
        nib = (bits >> np.uint16(4 * w)) & np.uint16(0xF)
        blocks["scales"][..., w] = (blocks["scales"][..., w] & np.uint16(0x0FFF)) | (nib << np.uint16(12))

def random_blocks(fmt: str, n_blocks: int, rng: np.random.Generator, scale: float = 0.05) -> np.ndarray:
    """n_blocks random blocks (bytes) with every f16 field (and iq1_m's spread one) a sane positive
    scale: random quants and sub-block scales, for kernel tests."""
    dt = BLOCK_DTYPES[fmt]
    raw = rng.integers(0, 256, size=n_blocks * dt.itemsize, dtype=np.uint8)
    blocks = raw.view(dt)
    for field, (ftype, _) in dt.fields.items():
        if ftype == np.dtype("<f2"):
            blocks[field] = (rng.uniform(0.2, 1.0, n_blocks) * scale).astype(np.float16)
    if fmt == "iq1_m":
        set_iq1m_scale(blocks, (rng.uniform(0.2, 1.0, n_blocks) * scale).astype(np.float16))
    return raw
