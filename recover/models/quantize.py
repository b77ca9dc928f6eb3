"""Quantize a GGUF with llama.cpp itself (`llama_model_quantize`), the same library that serves it. It lives
beside the engine because serving requantizes too (the CPU quant); export builds on it."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

from ..cpus import usable_cpus
from ..hashing import file_sha256
from .llama_engine import check_gguf

QUANT_TYPES = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q4_1", "Q3_K_M", "Q2_K")


def ftype(name: str) -> int:
    import llama_cpp  # llama_cpp: optional extra, loads a native library

    key = f"LLAMA_FTYPE_MOSTLY_{name.upper()}"
    if name.upper() not in QUANT_TYPES or not hasattr(llama_cpp, key):
        raise ValueError(f"quant {name!r}: choose one of {', '.join(QUANT_TYPES)}")
    return getattr(llama_cpp, key)


def quantize_gguf(src: str | Path, dst: str | Path, quant: str, allow_requantize: bool = False,
                  threads: int | None = None) -> Path:
    """src GGUF -> dst GGUF of type `quant`, written atomically (temp file + rename)."""
    import llama_cpp  # llama_cpp: optional extra, loads a native library

    check_gguf(str(src))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype(quant)
    p.allow_requantize = allow_requantize
    p.nthread = threads or usable_cpus()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(p))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize({src} -> {quant}) failed with code {rc}")
    os.replace(tmp, dst)
    return dst


def cached_requant(src: str | Path, quant: str, cache_dir: str | Path = "build/cache") -> Path:
    """A CPU-friendly copy of a GGUF (e.g. Q8_0 prompt-evals ~1.5x faster than Q4_1 here), cached."""
    h = file_sha256(src)[:12]  # keyed by content
    dst = Path(cache_dir) / f"{Path(src).stem}.requant-{quant}-{h}.gguf"
    return dst if dst.is_file() else quantize_gguf(src, dst, quant, allow_requantize=True)
