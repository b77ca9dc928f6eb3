"""The predictor interface and the mean-prompt predictor."""
from __future__ import annotations

from typing import Protocol, Sequence

from ..meanprompt.prompt import MeanPrompt


class Predictor(Protocol):
    name: str
    manifest: dict  # the artifact's own choices finish.decide_combine reads: "combine", "suffix"
    chunk_rows: int | None  # rows it wants per call; None: chunks.BATCH_SIZES for its kind

    def fit_budget(self, rows_left: int, seconds_left: float) -> None:
        """Told before a chunk how many rows are left and the seconds to the deadline: an ensemble sheds its
        last members to fit them; a single model has nothing to shed."""

    def predict_batch(self, originals: Sequence[str], rewrites: Sequence[str],
                      deadline: float | None = None) -> list[str | None]:
        """One raw prediction per row; None for a row the deadline (a time.monotonic()) cut off. May raise,
        the runner then falls back row by row."""


class MeanPredictor:
    """The same tuned constant for every row: the no-LLM, no-network baseline."""

    name = "mean"
    manifest: dict = {}  # no artifact, no choices (read only)
    chunk_rows = None

    def __init__(self, mean: MeanPrompt):
        self.mean = mean

    def fit_budget(self, rows_left: int, seconds_left: float) -> None:
        """Nothing to shed: a constant costs no time."""

    def predict_batch(self, originals, rewrites, deadline=None):
        return [self.mean.prompt for _ in originals]
