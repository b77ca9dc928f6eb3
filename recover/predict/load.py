"""The resolved PredictConfig -> the predictor it names, loaded, with its finisher (finish.py).

Loading is where this machine is asked what it serves (the GGUF, a cached requant on CPU; the adapter with the
settings it was trained with; an ensemble's staged base): under the time budget, and under --on-model-error
fallback, where any load failure makes the mean predictor serve every row (load_or_fallback).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..meanprompt.prompt import MeanPrompt
from ..models.llm import LlamaConfig, LlamaPredictor
from ..models.serving import serve_llm
from ..score.embedder import Embedder
from .base import MeanPredictor, Predictor
from .config import PredictConfig
from .embed import EmbedPredictor, default_artifact
from .ensemble import EnsemblePredictor, EnsembleSpec
from .finish import apply_invert, decide_combine, finisher


@dataclass(frozen=True)
class Loaded:
    """What the run predicts with; the stats report it."""
    predictor: Predictor
    finish: Callable[[str | None], str]  # raw answer -> submitted prompt
    combine: str  # the combine mode served
    model_error: str | None  # the load failure the mean predictor stands in for (--on-model-error fallback)
    served: dict  # model_served, engine: what served_by reports


def load(cfg: PredictConfig, mean: MeanPrompt, cap, fallback: str, log=print) -> Loaded:
    """The predictor the config names (under --on-model-error fallback, the mean predictor if it fails to load),
    served as decide_combine decides, with its finisher."""
    predictor, model_error = load_or_fallback(cfg, mean, cap, log)
    mode, finish = finisher(cfg.combine, predictor, mean, cap, fallback, log)
    return Loaded(predictor, finish, mode, model_error, served_by(predictor))


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


def load_llm(model: str, llm: dict, cpu_quant: str | None, seed: int, log=print) -> LlamaPredictor:
    """The model as served on this machine: its GGUF (a cached requant on CPU) and its adapter with the
    settings it was trained with (flags win), resolved once into the LlamaConfig the predictor loads."""
    served = serve_llm(model, llm, cpu_quant, log)
    lora = served.manifest
    # the adapter's chosen combine and its fitted suffix, read by decide_combine
    p = LlamaPredictor(LlamaConfig(model=served.path, seed=seed, **served.options),
                       manifest={k: lora[k] for k in ("combine", "suffix") if k in lora})
    c = p.cfg
    log(f"lora: {lora.get('name', c.lora_path)}" if c.lora_path else "lora: none (the bare base model)")
    log(f"llm engine: {c.engine}" + (f" ({c.torch_dtype}, {c.n_seq} rows a batch)" if c.engine == "torch" else
                                     f" ({c.n_seq} sequence(s), {c.n_gpu_layers} GPU layers)"))
    return p


def load_embed(model: str, embedder: str | None, dtype: str, log=print) -> EmbedPredictor:
    p = EmbedPredictor.load(model, embedder=embedder, dtype=dtype)
    log(f"embed features: {p.embedder.dtype} on {p.embedder.device}")
    return p


def load_ensemble(cfg: PredictConfig, cap, log=print) -> EnsemblePredictor:
    """The members of the ensemble's order, each loaded as `recover predict` loads it alone."""
    spec = EnsembleSpec.load(cfg.ensemble)
    if cfg.model:  # a staged copy of the members' base (the Kaggle dataset's GGUF)
        spec.with_base(cfg.model)
    spec.check_artifacts()
    members, engines = {}, {}  # one loaded engine per (base, adapter): a prefixed member shares it
    for name in spec.order:
        m = spec.member(name)
        if m.kind == "llm":
            key = (m.model, m.lora)
            if key not in engines:
                engines[key] = load_llm(m.model, {**cfg.llm, "lora_path": m.lora}, cfg.cpu_quant, cfg.seed, log)
            base = engines[key]
            members[name] = base.with_prefixes([m.prefix] if m.prefix else list(base.cfg.prefixes))
        else:
            p = load_embed(m.model or str(default_artifact()), cfg.embedder, cfg.embed_dtype, log)
            apply_invert(p, decide_combine(None, p), cap)  # the embed member is embed-invert when its artifact says so
            members[name] = p
    encode = None
    if spec.join != "concat":
        encode = Embedder.resolve(cfg.embedder).encode
    log(f"ensemble {spec.name}: {' + '.join(spec.order)}, join {spec.join}")
    return EnsemblePredictor(spec, members, cap, encode, log)


def served_by(predictor) -> dict:
    """The GGUF an LLM predictor serves (a cached requant on CPU) and its engine; None for the others."""
    llm = predictor.cfg if isinstance(predictor, LlamaPredictor) else None
    return {"model_served": llm.model if llm else None, "engine": llm.engine if llm else None}
