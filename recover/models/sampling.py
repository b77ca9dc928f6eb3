"""Top-p sampling's candidates without sorting the vocabulary: a full sort (and torch.multinomial over every
token) costs more per sampled token than a small model's decode step. Both engines cut the same nucleus a full
sort gives."""
from __future__ import annotations

import numpy as np


NUCLEUS_TOPK = (64, 1024)  # candidates looked at before a full sort of the vocabulary (top-p sampling)


def nucleus(probs, top_p: float):
    """(candidate probabilities, their token ids) per row for top-p sampling: the smallest set of tokens holding
    top_p of the mass (zero beyond it), likeliest first; ids None: every token, in vocabulary order (top_p 1). The
    set is looked for among the likeliest 64, then 1,024 tokens: a full sort only where those do not hold it."""
    import torch  # torch: heavy, optional extra

    if top_p >= 1.0:
        return probs, None
    for k in (*NUCLEUS_TOPK, probs.shape[-1]):
        k = min(k, probs.shape[-1])
        p, idx = probs.topk(k, dim=-1) if k < probs.shape[-1] else probs.sort(dim=-1, descending=True)
        if k == probs.shape[-1] or bool((p.sum(-1) >= top_p).all()):
            break
    keep = (p.cumsum(-1) - p) < top_p  # the same set a full sort gives: the likeliest tokens, cut where it does
    return p * keep, idx


def likeliest_first(p: np.ndarray, top_p: float, k: int = 64) -> np.ndarray:
    """Token ids by falling probability, far enough to hold top_p of the mass: the likeliest k when they do (a
    partition, then a sort of k), else the whole vocabulary sorted (a full argsort per sampled token costs as
    much as a small model's decode step)."""
    if k < len(p):
        top = np.argpartition(-p, k)[:k]
        top = top[np.argsort(-p[top])]
        if float(np.cumsum(p[top])[-1]) >= top_p:  # the sum the caller cuts by
            return top
    return np.argsort(-p)
