"""A per-row hedge: trust a row's LLM answer only where a second predictor agrees with it.

One suffix (or none) for every row cannot be right: the shipped adapter's answers on gemma_rewrites_d
are close already (any appended string lowers them), on gemma_rewrites_b many are weak. 6th place
weighted its mean prompt by how much its models agreed. Here the confidence signal, available at
predict time, is the agreement a_i = cos(e(llm_i), e(other_i)) between the LLM's answer and the embed
predictor's (which reads the same texts another way). The gate keeps the LLM answer where a_i >= tau
and submits the hedge (the embed predictor's string) elsewhere; tau is fitted on rows the model did
not train on, by the metric itself, and scored on another source.
"""
from __future__ import annotations

import numpy as np

from ..score.metric import cosine_rows

agreement = cosine_rows  # the signal: row-wise cosine of the two answers' embeddings

QUANTILES = np.linspace(0.0, 1.0, 21)  # candidate thresholds: the signal's 0%, 5%, ..., 100% points


def apply_gate(signal: np.ndarray, tau: float, keep: list[str], hedge: list[str]) -> list[str]:
    return [k if s >= tau else h for s, k, h in zip(signal, keep, hedge)]


def fit_gate(signal: np.ndarray, scs_keep: np.ndarray, scs_hedge: np.ndarray) -> dict:
    """tau maximising the mean SCS of 'keep where signal >= tau, else hedge' on these rows; the extremes
    (tau below every row: keep all; above every row: hedge all) are candidates, so the gate is never
    fitted worse than either option alone on its own rows."""
    signal, k, h = (np.asarray(x, np.float64) for x in (signal, scs_keep, scs_hedge))
    if not (len(signal) == len(k) == len(h)) or not len(signal):
        raise ValueError("gate fit: one signal, keep-score and hedge-score per row")
    taus = np.unique(np.concatenate([np.quantile(signal, QUANTILES), [signal.min() - 1, signal.max() + 1]]))
    scores = np.array([np.where(signal >= t, k, h).mean() for t in taus])
    best = int(np.argmax(scores))
    return {"tau": float(taus[best]), "score": float(scores[best]), "keep_all": float(k.mean()),
            "hedge_all": float(h.mean()), "kept_share": float((signal >= taus[best]).mean()), "rows": len(signal)}
