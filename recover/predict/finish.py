"""How a loaded predictor's raw answers become submitted prompts: the combine policy and the finisher.

decide_combine is the ONE place the combine mode (asked, else the artifact's own choice), the suffix pred+suffix
appends and per-row inversion are decided: for the predictor `recover predict` serves and for an ensemble's
embed member alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..meanprompt.prompt import MeanPrompt, combine, normalize_combine


@dataclass(frozen=True)
class Combine:
    mode: str  # a COMBINE_MODES name (meanprompt/prompt.py)
    suffix: str | None  # the artifact's fitted suffix (what pred+suffix appends); None: it carries none
    invert: bool  # the embed predictor edits its strings toward each row's predicted embedding (pred+invert)


def decide_combine(asked: str | None, predictor) -> Combine:
    """The mode asked for, else the artifact's own choice ("pred+mean" if it names none; the mean predictor:
    the mean prompt). Only the embed predictor inverts; the mean predictor standing in for a model that failed to
    load inverts nothing (its rows get the fallback)."""
    if asked:
        mode = asked
    elif predictor.name == "mean":
        mode = "mean"
    else:
        mode = normalize_combine(predictor.manifest.get("combine", "pred+mean"))
    invert = mode == "pred+invert" and predictor.name != "mean"
    if invert and predictor.name != "embed":
        raise ValueError(f"--combine {mode}: per-row inversion edits the embed predictor's strings; "
                         f"not built for {predictor.name}")
    return Combine(mode, predictor.manifest.get("suffix"), invert)


def apply_invert(predictor, how: Combine, cap) -> None:
    if how.invert:
        predictor.enable_invert(cap=cap)


def finisher(asked: str | None, predictor, mean: MeanPrompt, cap, fallback: str, log=print):
    """-> (the combine mode, raw answer -> submitted prompt): combined, capped, never blank."""
    how = decide_combine(asked, predictor)
    with_suffix = how.mode == "pred+suffix"
    if with_suffix and how.suffix is None:
        raise ValueError(f"--combine pred+suffix: the {predictor.name} artifact carries no suffix "
                         "(recover meanprompt suffix --into ARTIFACT writes one)")
    apply_invert(predictor, how, cap)
    log(f"predictor: {predictor.name}, combine: {how.mode}" + (f", suffix: {how.suffix!r}" if with_suffix else ""))
    tail = how.suffix if with_suffix else mean.prompt  # what the prediction is joined with

    def finish(raw: str | None) -> str:
        if with_suffix and not (raw or "").strip():
            return fallback
        out = cap(combine(raw or "", tail, how.mode).strip())
        return out if out.strip() else fallback
    return how.mode, finish
