"""The predictor interface and the mean-prompt predictor."""
from __future__ import annotations

from typing import Protocol, Sequence

from ..meanprompt.prompt import MeanPrompt


class Predictor(Protocol):
    name: str
    manifest: dict  # the artifact's own choices the runner reads: "combine", "suffix"
    chunk_rows: int | None  # rows it wants per call; None: the runner's BATCH_SIZES for its kind

    def predict_batch(self, originals: Sequence[str], rewrites: Sequence[str]) -> list[str]:
        """One raw prediction per row; may raise, the runner then falls back row by row."""


class MeanPredictor:
    """The same tuned constant for every row: the no-LLM, no-network baseline."""

    name = "mean"
    manifest: dict = {}  # no artifact, no choices (read only)
    chunk_rows = None

    def __init__(self, mean: MeanPrompt):
        self.mean = mean

    def predict_batch(self, originals, rewrites):
        return [self.mean.prompt for _ in originals]
