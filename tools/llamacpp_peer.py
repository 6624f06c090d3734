"""Where the native llama.cpp build is (the peer of the benchmarks and of some tests):
LLAMACPP_HOME, or ~/.cache/llama.cpp-peer (a CMake Release build with -DGGML_NATIVE=ON)."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path


def bin_dir(needs: str = "llama-quantize") -> Path | None:
    """The folder holding `needs` (a program or library of the build), or None."""
    home = os.environ.get("LLAMACPP_HOME")
    for d in ([Path(home) / "build" / "bin", Path(home) / "bin", Path(home)] if home else []) + [
            Path.home() / ".cache" / "llama.cpp-peer" / "build" / "bin"]:
        if (d / needs).is_file():
            return d
    return None


def ggml_base() -> ctypes.CDLL | None:
    """llama.cpp's libggml-base with ggml_quantize_chunk / ggml_quantize_init declared, or None."""
    d = bin_dir("libggml-base.so")
    if d is None:
        return None
    lib = ctypes.CDLL(str(d / "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    return lib
