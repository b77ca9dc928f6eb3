"""What `recover predict` is asked to do: one typed, validated config, read and never written by the pipeline.

defaults.predict_config resolves flags, a preset and the shipped default (the default LoRA included) into it;
a caller that builds one directly states every choice itself.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import constants as C
from ..meanprompt.prompt import normalize_combine
from ..models.quantize import QUANT_TYPES
from ..score.embedder import DTYPES

PREDICTORS = ("mean", "llm", "embed", "ensemble")
ON_MODEL_ERROR = ("fail", "fallback")


def parse_duration(text: str | None) -> float | None:
    """'8h30m' / '90s' / '45m' / '3600' -> seconds."""
    if text in (None, ""):
        return None
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?", s)
    if not m or not any(m.groups()):
        raise ValueError(f"--time-budget {text!r}: use e.g. 8h30m, 45m, 90s")
    h, mi, se = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + se


@dataclass(frozen=True)
class PredictConfig:
    input: str
    output: str
    predictor: str = "mean"
    model: str | None = None
    ensemble: str | None = None  # a shipped ensemble's name or a manifest (predict/ensemble.py)
    mean_prompt: str | None = None
    combine: str | None = None  # None: the predictor's own choice (finish.decide_combine)
    time_budget: str | None = None
    on_model_error: str = "fail"
    batch_size: int | None = None  # rows per checkpointed chunk; None: the predictor's own (chunks.BATCH_SIZES)
    seed: int = C.DEFAULT_SEED
    embedder: str | None = None
    restart: bool = False
    run_root: str | None = None
    llm: dict = field(default_factory=dict)  # LlamaConfig fields as served (models/llm.py); lora_path resolved
    embed_dtype: str = "auto"  # the embed predictor's FEATURE encoding: auto = bf16 on a bf16 CPU (LOSO: no loss)
    cpu_quant: str | None = "auto"  # on CPU: "auto" (packaged model in the measured quant), "none", or a quant

    def __post_init__(self):
        if self.predictor not in PREDICTORS:
            raise ValueError(f"--predictor {self.predictor!r}: choose one of {', '.join(PREDICTORS)}")
        if self.predictor in ("llm", "embed") and not self.model:
            raise ValueError(f"--predictor {self.predictor} needs --model")
        if (self.predictor == "ensemble") != bool(self.ensemble):
            raise ValueError("--ensemble NAME and --predictor ensemble go together")
        if self.ensemble and self.model and not self.model.endswith(".gguf"):
            raise ValueError("--ensemble with --model: a base GGUF its LLM members' adapters were made on")
        if self.predictor == "llm" and self.llm.get("lora_path") == C.NO_LORA:  # a flag's word, resolved by predict_config
            raise ValueError(f"llm lora_path {C.NO_LORA!r}: build the config with predict_config, which reads it")
        if self.combine:  # the canonical name, so the checkpoint and the record do not depend on the alias
            object.__setattr__(self, "combine", normalize_combine(self.combine))
            if self.predictor == "mean" and self.combine != "mean":
                raise ValueError(f"--combine {self.combine} needs a model predictor; the mean predictor only writes the mean prompt")
        if self.on_model_error not in ON_MODEL_ERROR:
            raise ValueError(f"--on-model-error: choose {' or '.join(ON_MODEL_ERROR)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        if self.cpu_quant not in (None, "auto", "none"):
            if self.cpu_quant.upper() not in QUANT_TYPES:
                raise ValueError(f"--cpu-quant {self.cpu_quant!r}: auto, none or one of {', '.join(QUANT_TYPES)}")
        if self.embed_dtype not in DTYPES:
            raise ValueError(f"--embed-dtype {self.embed_dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.seed == 0:
            raise ValueError("--seed 0 means 'random' to llama.cpp; pass a nonzero seed")
        parse_duration(self.time_budget)

    def deadline(self, start: float) -> float | None:
        """time.monotonic() by which prediction stops, for a run started at `start`: the budget less a reserve
        for writing the file (the submission must exist before the budget ends); None without a budget."""
        budget = parse_duration(self.time_budget)
        return start + budget - max(5.0, 0.02 * budget) if budget else None

    def fingerprint(self, mean_prompt: str) -> dict:
        """What a checkpoint's rows were made by: a resumed run must match it (predict/output.py)."""
        digest = hashlib.sha256(Path(self.input).read_bytes()).hexdigest()[:16]
        return {"input_sha": digest, "predictor": self.predictor, "model": self.model, "ensemble": self.ensemble,
                "combine": self.combine,
                "mean_prompt": mean_prompt, "seed": self.seed, "llm": self.llm, "cpu_quant": self.cpu_quant}
