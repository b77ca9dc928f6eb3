"""Sharpened cosine similarity (SCS), exactly the competition's definition.

score = mean over rows of cos(e(pred), e(true)) ** 3, with e = sentence-t5-base. Negative cosines
stay negative after cubing, as in the competition notebook's metric.
"""
from __future__ import annotations

import numpy as np

from .. import constants as C


def normalise(x: np.ndarray) -> np.ndarray:
    """Unit rows, in x's own dtype (the embed predictor's float64 fits stay float64)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit rows as float32 (what the metric compares)."""
    return normalise(np.asarray(x, dtype=np.float32))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) arrays."""
    return np.sum(normalize(a) * normalize(b), axis=-1)


def sharpen(cos: np.ndarray, exponent: int = C.SCS_EXPONENT) -> np.ndarray:
    """The ONE place the cosine is cubed: every SCS figure in the project goes through here."""
    return np.asarray(cos) ** exponent


def scs_rows(pred_emb: np.ndarray, true_emb: np.ndarray, exponent: int = C.SCS_EXPONENT) -> np.ndarray:
    """Per-row SCS of two (n, d) arrays (normalised here)."""
    return sharpen(cosine_rows(pred_emb, true_emb), exponent)


def scs_matrix(a_emb: np.ndarray, b_emb: np.ndarray) -> np.ndarray:
    """SCS of every row of a against every row of b: (n, m). Both already L2-normalised (hot paths)."""
    return sharpen(a_emb @ b_emb.T)


def scs(pred_emb: np.ndarray, true_emb: np.ndarray, exponent: int = C.SCS_EXPONENT) -> float:
    return float(np.mean(scs_rows(pred_emb, true_emb, exponent)))


def scs_against_many(cand_emb: np.ndarray, targets_emb: np.ndarray, exponent: int = C.SCS_EXPONENT) -> np.ndarray:
    """Mean SCS of each candidate (k, d) against all targets (n, d): returns (k,).

    Both inputs must already be L2-normalised; this is the mean-prompt objective's hot path.
    """
    return np.mean(sharpen(cand_emb @ targets_emb.T, exponent), axis=1)
