"""The mean prompt (one tuned constant for every row) and how a row's prediction joins it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MEAN_PROMPT_PATH = Path(__file__).resolve().parent / "default.json"
COMBINE_MODES = ("mean", "pred", "pred+mean", "mean+pred", "pred+suffix", "pred+invert")
# "llm" and "embed" read naturally on the command line; they name the same thing as "pred".
# pred+suffix: the prediction followed by the suffix fitted to follow this artifact's own predictions
# (its manifest's "suffix", meanprompt/suffix.py); a blank prediction gets the mean prompt.
COMBINE_ALIASES = {"llm": "pred", "embed": "pred", "llm+mean": "pred+mean", "embed+mean": "pred+mean",
                   "mean+llm": "mean+pred", "mean+embed": "mean+pred", "llm+suffix": "pred+suffix",
                   "embed+suffix": "pred+suffix", "embed+invert": "pred+invert"}
# pred+invert: the embed predictor's string edited toward its predicted embedding (predict/invert.py); the
# predictor does it, so the runner submits the prediction as is


@dataclass
class MeanPrompt:
    prompt: str
    source: str
    scores: dict

    @classmethod
    def load(cls, value: str | None = None) -> "MeanPrompt":
        """None -> the shipped default; a path to a mean_prompt JSON; otherwise the literal string."""
        if value is None:
            return cls._from_json(DEFAULT_MEAN_PROMPT_PATH)
        p = Path(value)
        if p.suffix == ".json" and p.is_file():
            return cls._from_json(p)
        if not value.strip():
            raise ValueError("--mean-prompt is blank")
        return cls(value.strip(), "literal", {})

    @classmethod
    def _from_json(cls, path: Path) -> "MeanPrompt":
        d = json.loads(path.read_text())
        if not str(d.get("prompt", "")).strip():
            raise ValueError(f"{path}: field 'prompt' is missing or blank")
        return cls(d["prompt"].strip(), str(path), d.get("scores", {}))


def normalize_combine(mode: str) -> str:
    mode = COMBINE_ALIASES.get(mode, mode)
    if mode not in COMBINE_MODES:
        raise ValueError(f"--combine {mode!r}: choose one of {', '.join(COMBINE_MODES + tuple(COMBINE_ALIASES))}")
    return mode


def combine(pred: str, mean: str, mode: str) -> str:
    """Join a row's prediction with the mean prompt, as every top-4 team did."""
    pred = (pred or "").strip()
    if mode == "mean" or not pred:
        return mean
    if mode in ("pred", "pred+invert"):
        return pred
    if mode in ("pred+mean", "pred+suffix"):  # the caller passes the suffix as `mean` for pred+suffix
        return f"{pred} {mean}".strip()
    return f"{mean} {pred}"
