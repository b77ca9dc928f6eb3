"""What a model is served with on THIS machine: the CPU engine (torch or llama.cpp), the rows in flight, the torch
precision and the llama.cpp quant, from the choice measured here or the packaged rule of the CPU's class
(cpu_choice.py). serve_llm resolves what an LLM is served from (its GGUF, its adapter's settings), in one
call; served_config resolves its config into this machine's engine, rows and precision."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

from .. import constants as C
from ..cpus import user_cache_dir
from . import cpu_choice as features
from .cpu_choice import cpu_choice
from .quantize import cached_requant
from .shipped import llm_options, resolve_model_path

TORCH_ROWS = 8  # rows per torch batch unless told: `recover bench` measured batches faster than single rows


def default_cpu_quant() -> dict | None:
    """The CPU choice for THIS machine (cpu_choice.py): what `recover bench --choose-cpu-quant` measured
    here (~/.cache/recover/cpu-choice-<cpu key>.json), else the packaged rule of the CPU's feature class."""
    return cpu_choice()


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512_BF16 (bf16 matmuls in hardware), read from the same features this machine's choice is keyed by
    (cpu_choice.read_cpu_features): a choice and the bf16 test it is served under never disagree about the CPU."""
    return features.read_cpu_features().fast_bf16


def cpu_torch_dtype() -> str:
    """The torch engine's precision when none is asked for: what the machine's choice names with torch, else bf16
    where the CPU has bf16 hardware and fp32 where it does not."""
    choice = default_cpu_quant() or {}
    if choice.get("engine") == "torch" and choice.get("torch_dtype"):
        return choice["torch_dtype"]
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def cpu_engine(engine: str = "auto") -> str:
    """The engine `engine` means on a CPU: auto = torch where this machine's choice names it (and a bf16
    precision only on bf16 hardware) and torch is importable; llama.cpp elsewhere."""
    if engine != "auto":
        return engine
    choice = default_cpu_quant() or {}
    needs_bf16 = choice.get("torch_dtype") in (None, "bf16", "amp")
    return "torch" if (choice.get("engine") == "torch" and (cpu_has_fast_bf16() or not needs_bf16) and
                       all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf"))) else "llama"


def served_config(cfg, arch: str | None):
    """A LlamaConfig (models/llm.py) as this machine serves it: its engine, rows in flight and torch precision
    resolved (see LlamaConfig.engine, n_seq and torch_dtype); a copy, the caller's is left as it was. arch: the
    GGUF's general.architecture, read where engine auto must know whether the torch engine builds it."""
    if cfg.engine == "auto" and arch not in (None, *C.TORCH_ENGINE_GGUF_ARCHS):
        cfg = replace(cfg, engine="llama")  # e.g. Phi-2: the torch engine builds llama, gemma3 and qwen2 only
    engine, n_seq = resolve_engine(cfg)
    dtype = cfg.torch_dtype or (cpu_torch_dtype() if engine == "torch" else None)
    return replace(cfg, engine=engine, n_seq=n_seq, torch_dtype=dtype)


def resolve_engine(cfg) -> tuple[str, int]:
    """(engine, rows in flight) for a LlamaConfig; see LlamaConfig.engine and n_seq."""
    choice = default_cpu_quant() or {}
    engine = "llama" if cfg.engine == "auto" and cfg.n_gpu_layers else cpu_engine(cfg.engine)
    if cfg.n_seq is not None:
        return engine, cfg.n_seq
    if engine == "torch":
        return engine, int(choice.get("n_seq", TORCH_ROWS)) if choice.get("engine") == "torch" else TORCH_ROWS
    return engine, 1


@dataclass(frozen=True)
class ServedLLM:
    """An LLM as this machine serves it (serve_llm): the GGUF the engine loads (a cached requant on CPU), the
    LlamaConfig options it is served with (its adapter's trained settings, the flags over them) and the adapter's
    manifest ({} without one)."""
    path: str
    options: dict
    manifest: dict


def serve_llm(model: str, llm: dict, cpu_quant: str | None = "auto", log=print) -> ServedLLM:
    """`model` with the flags `llm`, resolved once. On CPU the packaged model is served as a cached requant in the
    measured fastest quant (`auto`); `--cpu-quant Q8_0` asks for it with any GGUF, `none` never. A `--lora` brings
    the settings it was trained with (template, n_ctx; flags win) and the --combine its held-out eval chose."""
    quant, why = cpu_requant(model, llm, cpu_quant)
    options, manifest = llm_options(llm)
    path = resolve_model_path(model)
    if quant:
        out = cached_requant(path, quant, user_cache_dir())
        log(f"CPU: serving {out} ({quant} requant of {Path(path).name}; {why})")
        path = str(out)
    return ServedLLM(path, options, manifest)


def cpu_requant(model: str, llm: dict, cpu_quant: str | None) -> tuple[str | None, str]:
    """(the quant `model` is served in on this machine, why); None: the file as it is."""
    on_gpu = llm.get("n_gpu_layers", 0) not in (0, None)
    if cpu_quant in (None, "none") or on_gpu:
        return None, ""
    if cpu_quant == "auto" and cpu_engine(llm.get("engine", "auto")) == "torch":
        return None, ""  # the torch engine dequantises the file the adapters were trained and verified on
    if cpu_quant == "auto":
        choice = default_cpu_quant() if model == C.PYPI_SMOLLM2 else None
        return (choice or {}).get("quant"), f"this machine's CPU choice: {(choice or {}).get('source')}"
    return cpu_quant, "--cpu-quant"
