"""The predictor interface and the mean-prompt predictor."""
from __future__ import annotations

from typing import Protocol, Sequence

from ..meanprompt.prompt import MeanPrompt


class Predictor(Protocol):
    name: str

    def predict_batch(self, originals: Sequence[str], rewrites: Sequence[str]) -> list[str]:
        """One raw prediction per row; may raise, the runner then falls back row by row."""


class MeanPredictor:
    """The same tuned constant for every row: the no-LLM, no-network baseline."""

    name = "mean"

    def __init__(self, mean: MeanPrompt):
        self.mean = mean

    def predict_batch(self, originals, rewrites):
        return [self.mean.prompt for _ in originals]
