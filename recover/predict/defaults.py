"""The ONE default predictor, used by `recover predict` with no flags, `make demo` and the notebook.

`recover/assets/default_predictor.json` names it and records why (its leave-one-source-out figures
and the command that produced them). It is written by `recover eval --ship` and nowhere else.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import constants as C
from ..cli_args import LLM_FLAGS
from ..models.shipped import ASSETS, with_default_lora
from .config import PredictConfig
from .embed import default_artifact

DEFAULT_FILE = ASSETS / C.DEFAULT_PREDICTOR_FILE


def default_choice() -> dict:
    """{"predictor": "ensemble"|"embed"|"mean", "model": path or None, "ensemble": name or None, "why": ...};
    the mean prompt if nothing is shipped."""
    if not DEFAULT_FILE.is_file():
        return {"predictor": "mean", "model": None, "ensemble": None, "why": "no default_predictor.json shipped"}
    d = json.loads(DEFAULT_FILE.read_text())
    model = str(ASSETS / d["model"]) if d.get("model") else None
    if model and not (Path(model) / C.MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"{DEFAULT_FILE}: names {model}, which has no {C.MANIFEST_FILE}")
    return {**d, "model": model, "ensemble": d.get("ensemble")}


def preset(name: str) -> dict:
    """A context's default (recover/assets/presets.json): {"ensemble": shipped name, "model": its members' base,
    "why": ...}. The ONE place both `recover predict --preset kaggle` and `make datasets` (so the submission
    notebook) read what Kaggle serves."""
    if name not in C.PRESETS:
        raise ValueError(f"--preset {name!r}: choose one of {', '.join(C.PRESETS)}")
    f = ASSETS / C.PRESETS_FILE
    presets = {k: v for k, v in json.loads(f.read_text()).items() if k != "format_version"} if f.is_file() else {}
    if name not in presets:
        raise ValueError(f"--preset {name}: {f} has no entry for it")
    p = presets[name]
    unknown = sorted(set(p) - {"ensemble", "model", "why", "figures", "command"})
    if unknown or not p.get("ensemble"):
        raise ValueError(f"{f}: preset {name}: " + (f"unknown key {unknown[0]!r}" if unknown else "names no ensemble"))
    return p


def kaggle_preset_ensemble(model: str | None) -> str | None:
    """The ensemble `recover kaggle datasets` stages for the notebook when no --ensemble is given: the Kaggle
    preset's, when the staged base is the preset's base (a 7B base from a train kernel serves its own LoRA)."""
    p = preset("kaggle")
    return p["ensemble"] if model is not None and model == p.get("model") else None


def resolve_predictor(predictor: str | None, model: str | None,
                      ensemble: str | None = None) -> tuple[str, str | None, str | None]:
    """What `--predictor` / `--model` / `--ensemble` mean together -> (predictor, model, ensemble); every
    combination is explicit or an error."""
    if ensemble is not None:
        if predictor not in (None, "ensemble"):
            raise ValueError("--ensemble: its members name their models; give no --predictor")
        return "ensemble", model, ensemble  # model: a staged copy of the members' base GGUF (EnsembleSpec.with_base)
    if predictor is None and model is None:
        d = default_choice()
        return d["predictor"], d["model"], d["ensemble"]
    if predictor == "ensemble":
        d = default_choice()
        if not d["ensemble"]:
            raise ValueError("--predictor ensemble: give --ensemble NAME (no ensemble is the shipped default)")
        return "ensemble", None, d["ensemble"]
    if predictor is None:
        predictor = infer_kind(model)
    if predictor == "embed" and model is None:
        shipped = default_artifact()
        if shipped is None:
            raise ValueError("--predictor embed: no --model given and no embed predictor is shipped")
        return "embed", str(shipped), None
    if predictor == "mean" and model is not None:
        raise ValueError("--predictor mean takes no --model (use --mean-prompt for another constant)")
    return predictor, model, None


def infer_kind(model: str) -> str:
    if model.endswith(".gguf") or model in C.PYPI_MODELS:
        return "llm"
    mf = Path(model) / C.MANIFEST_FILE
    if mf.is_file() and json.loads(mf.read_text()).get("kind") == "embed_predictor":
        return "embed"
    raise ValueError(f"--model {model}: neither a .gguf file nor an embed-predictor folder; pass --predictor")


def predict_config(input: str, output: str, *, predictor: str | None = None, model: str | None = None,
                   ensemble: str | None = None, preset_name: str | None = None, llm: dict | None = None,
                   **settings) -> PredictConfig:
    """The ONE place flags, a preset and the shipped defaults (the predictor, a PyPI base's LoRA) become a
    PredictConfig: `recover predict` and `make demo` both build theirs here. settings: the other PredictConfig
    fields, as given."""
    llm = llm or {}
    if preset_name:  # what that context serves by default, read where its staging reads it
        if predictor or ensemble:
            raise ValueError(f"--preset {preset_name}: it names the predictor; give no --predictor or --ensemble")
        ensemble = preset(preset_name)["ensemble"]
    predictor, model, ensemble = resolve_predictor(predictor, model, ensemble)
    if llm and predictor not in ("llm", "ensemble"):
        raise ValueError(f"{LLM_FLAGS[next(iter(llm))]}: a llama.cpp flag, but the predictor is {predictor!r} "
                         "(it would be ignored); give --model GGUF or --predictor llm")
    if predictor == "llm":  # a PyPI base without --lora: its shipped final fit (recorded in the run folder)
        llm = with_default_lora(model, llm)
    return PredictConfig(input, output, predictor=predictor, model=model, ensemble=ensemble, llm=llm, **settings)
