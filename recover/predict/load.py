"""The resolved PredictConfig -> the predictor it names, loaded, with its finisher (finish.py).

Each kind loads where it lives (models/llm.load_llm, embed.load_embed, ensemble.load_ensemble); loading is where
this machine is asked what it serves (the GGUF, a cached requant on CPU; the adapter with the settings it was
trained with; an ensemble's staged base): under the time budget, and under --on-model-error fallback, where any
load failure makes the mean predictor serve every row (load_or_fallback).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..meanprompt.prompt import MeanPrompt
from ..models.llm import LlamaPredictor, load_llm
from .base import MeanPredictor, Predictor
from .config import PredictConfig
from .embed import load_embed
from .ensemble import load_ensemble
from .finish import finisher


@dataclass(frozen=True)
class Loaded:
    """What the run predicts with; the stats report it."""
    predictor: Predictor
    finish: Callable[[str | None], str]  # raw answer -> submitted prompt
    combine: str  # the combine mode served
    model_error: str | None  # the load failure the mean predictor stands in for (--on-model-error fallback)

    @property
    def served(self) -> dict:
        """The GGUF an LLM predictor serves (a cached requant on CPU) and its engine; None for the others."""
        llm = self.predictor.cfg if isinstance(self.predictor, LlamaPredictor) else None
        return {"model_served": llm.model if llm else None, "engine": llm.engine if llm else None}


def load(cfg: PredictConfig, mean: MeanPrompt, cap, fallback: str, log=print) -> Loaded:
    """The predictor the config names (under --on-model-error fallback, the mean predictor if it fails to load),
    served as decide_combine decides, with its finisher."""
    predictor, model_error = load_or_fallback(cfg, mean, cap, log)
    mode, finish = finisher(cfg.combine, predictor, mean, cap, fallback, log)
    return Loaded(predictor, finish, mode, model_error)


def load_or_fallback(cfg: PredictConfig, mean: MeanPrompt, cap, log=print):
    """-> (predictor, None) or, under --on-model-error fallback, (the mean predictor, the load error)."""
    try:
        return build_predictor(cfg, mean, cap, log), None
    except Exception as e:  # noqa: BLE001 - any load failure is reported in one line
        if cfg.on_model_error != "fallback":
            raise
        model_error = f"{type(e).__name__}: {e}"
        log(f"ERROR loading model ({model_error}); --on-model-error fallback: every row gets the mean prompt")
        return MeanPredictor(mean), model_error


def build_predictor(cfg: PredictConfig, mean: MeanPrompt, cap=None, log=print):
    if cfg.predictor == "mean":
        return MeanPredictor(mean)
    if cfg.predictor == "llm":
        return load_llm(cfg.model, cfg.llm, cfg.cpu_quant, cfg.seed, log)
    if cfg.predictor == "ensemble":
        return load_ensemble(cfg, cap, log)
    return load_embed(cfg.model, cfg.embedder, cfg.embed_dtype, log)
