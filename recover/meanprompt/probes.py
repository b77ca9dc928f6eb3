"""Leaderboard-probe matching: reweight the local targets until local scores match the leaderboard's.

A probe is a constant prompt submitted as every row's prediction; its leaderboard score is the mean SCS
of that prompt against the hidden prompts. The local score of the same probe under target weights
w is sum_j w_j cos(e(probe), e(t_j))^3. The targets are grouped (k-means on their embeddings), each
group's weight is fitted so that the local scores of all probes match their leaderboard scores in the
least-squares sense (weights >= 0, summing to 1, pulled toward the unmatched weights by a ridge), and
each target keeps its share within its group. 3rd/4th/7th place did this by hand; here it is a fit.

The probe scores must come from the SAME embedder as the local scores: on Kaggle that is sentence-t5
(kernels/tune); locally the simulation (`recover probes sim`) uses the proxy on both sides.
"""
from __future__ import annotations

import numpy as np

from .. import constants as C
from ..csvio import InputError, read_table
from ..score.metric import scs_matrix

PROBE_COLUMNS = ("prompt", "score")


def load_probes(path: str) -> list[tuple[str, float]]:
    """CSV with columns prompt, score (the public leaderboard score that constant submission got)."""
    df = read_table(path, PROBE_COLUMNS, id_col="prompt")  # a blank or repeated probe is an error
    out = []
    for i, (p, s) in enumerate(zip(df["prompt"], df["score"]), start=2):
        try:
            v = float(s)
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {i}: score {s!r} is not a number") from None
        if not isinstance(p, str) or not p.strip():
            raise InputError(f"{path}: line {i}: empty prompt")
        if not np.isfinite(v) or not -1.0 <= v <= 1.0:
            raise InputError(f"{path}: line {i}: score {v} is not an SCS in [-1, 1]")
        out.append((p, v))
    if len(out) < 2:
        raise InputError(f"{path}: needs at least 2 probes, got {len(out)}")
    return out


def kmeans(X: np.ndarray, k: int, seed: int = C.DEFAULT_SEED, iters: int = 30) -> np.ndarray:
    """Cosine k-means (rows L2-normalised), k-means++ start; returns each row's cluster."""
    n = len(X)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centers = [X[rng.integers(n)]]
    d = 1 - X @ centers[0]
    for _ in range(1, k):
        p = np.maximum(d, 0) ** 2
        centers.append(X[rng.choice(n, p=p / p.sum()) if p.sum() > 0 else rng.integers(n)])
        d = np.minimum(d, 1 - X @ centers[-1])
    Cm = np.stack(centers)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        new = np.argmax(X @ Cm.T, 1)
        if _ and (new == labels).all():
            break
        labels = new
        for j in range(k):
            m = X[labels == j]
            if len(m):
                c = m.sum(0)
                Cm[j] = c / max(np.linalg.norm(c), 1e-12)
    return labels


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {w >= 0, sum w = 1} (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1
    rho = np.nonzero(u - css / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1), 0)


def match_group_weights(S: np.ndarray, y: np.ndarray, prior: np.ndarray, ridge: float = 1e-4,
                        iters: int = 5000) -> np.ndarray:
    """argmin_w |S w - y|^2 + ridge |w - prior|^2 on the simplex (projected gradient, exact step size).
    S: (probes, groups) each group's mean score of each probe; y: the probes' leaderboard scores."""
    w = prior.astype(np.float64).copy()
    L = 2 * (np.linalg.norm(S, 2) ** 2 + ridge)
    for _ in range(iters):
        g = 2 * S.T @ (S @ w - y) + 2 * ridge * (w - prior)
        nw = project_simplex(w - g / L)
        if np.abs(nw - w).max() < 1e-10:
            return nw
        w = nw
    return w


def probe_weights(target_emb: np.ndarray, base: np.ndarray, probe_emb: np.ndarray, scores, groups: int = 24,
                  ridge: float = 1e-4, seed: int = C.DEFAULT_SEED) -> tuple[np.ndarray, dict]:
    """Per-target weights under which the local probe scores match `scores`; and a report."""
    base = np.asarray(base, np.float64) / np.sum(base)
    y = np.asarray(scores, np.float64)
    labels = kmeans(target_emb, groups, seed)
    G = labels.max() + 1
    prior = np.bincount(labels, weights=base, minlength=G)
    cube = scs_matrix(probe_emb.astype(np.float64), target_emb.astype(np.float64))  # (probes, targets)
    S = np.stack([cube[:, labels == g] @ base[labels == g] / max(prior[g], 1e-12) for g in range(G)], 1)
    w = match_group_weights(S, y, prior, ridge)
    new = base * (w / np.maximum(prior, 1e-12))[labels]
    rmse = lambda v: float(np.sqrt(np.mean((S @ v - y) ** 2)))  # noqa: E731
    report = {"probes": len(y), "groups": int(G), "ridge": ridge, "rmse_before": round(rmse(prior), 5),
              "rmse_after": round(rmse(w), 5), "group_weight_moved": round(float(np.abs(w - prior).sum() / 2), 4)}
    return new / new.sum(), report


def pick_probes(target_emb: np.ndarray, targets: list[str], k: int, seed: int = C.DEFAULT_SEED) -> list[str]:
    """K probes that cover the local targets: the target nearest each of K k-means centres."""
    labels = kmeans(target_emb, k, seed)
    out = []
    for g in range(labels.max() + 1):
        idx = np.flatnonzero(labels == g)
        c = target_emb[idx].sum(0)
        out.append(targets[idx[int(np.argmax(target_emb[idx] @ c))]])
    return list(dict.fromkeys(out))
