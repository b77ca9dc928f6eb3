"""How an ensemble's member answers become one prompt (1st place: several models' answers joined, then a
suffix). Pure functions over strings and embeddings: `recover predict --ensemble` joins live answers with them,
`recover eval` refits a join from cached answers in seconds.

    concat   the members' answers in the manifest's order, separated, the suffix last, under the metric's
             128-token cap (the suffix kept whole; the LAST members lose words first: order is priority)
    mbr      per row, the one answer closest to the others (highest mean cosine: minimum Bayes risk)
    invert   concat, then edited toward the mean of the members' embeddings (predict/invert.py)
"""
from __future__ import annotations

import numpy as np

JOINS = ("concat", "mbr", "invert")


def join_strings(parts: list[str | None], separator: str = " ", suffix: str = "", cap=None) -> str:
    """One row: non-blank parts in order + suffix, capped (`cap`: a TokenCap or CharCap; None: uncapped)."""
    body = separator.join(p.strip() for p in parts if p and p.strip())
    if cap is None:
        return f"{body} {suffix}".strip() if suffix else body
    return cap.keep_tail(body, suffix) if suffix else cap(body)


def mbr_pick(embs: np.ndarray) -> np.ndarray:
    """embs (members, rows, dim), L2-normalised -> per row the member whose answer has the highest mean
    cosine to the other members' (ties: the earlier member, i.e. the fitted order's)."""
    m = embs.shape[0]
    if m < 2:
        return np.zeros(embs.shape[1], dtype=int)
    sims = np.einsum("ird,jrd->ijr", embs, embs)  # (m, m, rows)
    score = (sims.sum(1) - np.einsum("iir->ir", sims)) / (m - 1)
    return np.argmax(score, axis=0)


def mean_target(embs: np.ndarray) -> np.ndarray:
    """The members' mean embedding per row, normalised: the inversion's target for the `invert` join."""
    t = embs.mean(0)
    return t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
