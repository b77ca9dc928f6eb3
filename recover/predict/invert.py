"""Per-row embedding inversion (2nd place): edit a string until its embedding matches a predicted one.

The embed predictor gives each row a predicted prompt embedding t_i. Starting from a candidate string
(the embed predictor's nearest candidate, or the LLM's answer + the mean prompt), greedy edits over a
vocabulary pre-ranked per row by cos(e(word), t_i) keep whichever edited string has the highest
cos(e(string), target):

    append a word | put a word in front | replace a word | delete a word

until no edit gains `min_gain`, or the row's budget is spent: `max_edits` edits and `max_seconds`
seconds, checked before every edit (the per-row budget is what keeps 1,400 rows inside a notebook's
time). The predicted embedding is noisy (its cosine to the truth is far from 1), so the target can
be blended toward the start's own embedding (`blend`): 0 = the prediction alone, 1 = stay put.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .embed import normalise


@dataclass
class InvertConfig:
    max_edits: int = 4  # per row
    max_seconds: float = 2.0  # per row; checked before each edit
    top_words: int = 32  # the row's pre-ranked words tried as appends / fronts
    replace_words: int = 4  # of those, the best few tried in every position
    blend: float = 0.0  # target = normalise((1 - blend) * predicted + blend * e(start))
    min_gain: float = 1e-4  # in cosine
    max_words: int = 60  # never grow a string past this (the metric cuts at 128 tokens)

    def __post_init__(self):
        if self.max_edits < 0 or self.max_seconds < 0:
            raise ValueError("invert: max_edits and max_seconds are >= 0")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"invert: blend {self.blend} is not in [0, 1]")
        if self.top_words < 1 or not 0 <= self.replace_words <= self.top_words:
            raise ValueError("invert: top_words >= 1 and 0 <= replace_words <= top_words")


def edits(words: list[str], top: list[str], replace: int, max_words: int) -> list[list[str]]:
    """Every string one edit away from `words`."""
    out = []
    if len(words) < max_words:
        out += [words + [v] for v in top] + [[v] + words for v in top]
    for j in range(len(words)):
        out += [words[:j] + [v] + words[j + 1:] for v in top[:replace] if v != words[j]]
        if len(words) > 1:
            out.append(words[:j] + words[j + 1:])
    return out


class Inverter:
    """`encode`: list of strings -> unit-norm embeddings (the metric's embedder); `vocab` and its embeddings
    are the words edits may use. `clock` is injectable so the time budget can be tested."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], vocab: list[str], vocab_emb: np.ndarray,
                 cfg: InvertConfig | None = None, cap: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if len(vocab) != len(vocab_emb) or not len(vocab):
            raise ValueError("invert: one embedding per vocabulary word, at least one word")
        self.encode, self.vocab, self.V = encode, list(vocab), np.asarray(vocab_emb, np.float32)
        self.cfg, self.cap, self.clock = cfg or InvertConfig(), cap or (lambda s: s), clock

    def row(self, start: str, predicted: np.ndarray, start_emb: np.ndarray | None = None) -> tuple[str, dict]:
        c = self.cfg
        t0 = self.clock()
        cur = start.split()
        e0 = self.encode([start])[0] if start_emb is None else start_emb
        target = normalise((1 - c.blend) * np.asarray(predicted, np.float32) + c.blend * e0)
        best = float(e0 @ target)
        top = [self.vocab[i] for i in np.argsort(-(self.V @ target))[:c.top_words]]
        n, stop = 0, "edits"
        while n < c.max_edits:
            if self.clock() - t0 >= c.max_seconds:
                stop = "seconds"
                break
            cands = list(dict.fromkeys(self.cap(" ".join(w)) for w in edits(cur, top, c.replace_words, c.max_words)))
            cands = [s for s in cands if s.strip()]
            if not cands:
                stop = "no edit"
                break
            sc = self.encode(cands) @ target
            k = int(np.argmax(sc))
            if sc[k] - best < c.min_gain:
                stop = "converged"
                break
            cur, best, n = cands[k].split(), float(sc[k]), n + 1
        return " ".join(cur) if cur else start, {"edits": n, "stop": stop, "cos": round(best, 5),
                                                 "seconds": round(self.clock() - t0, 3)}

    def rows(self, starts: list[str], predicted: np.ndarray, start_emb: np.ndarray | None = None) -> tuple[list[str], list[dict]]:
        out, info = [], []
        for i, s in enumerate(starts):
            r, d = self.row(s, predicted[i], None if start_emb is None else start_emb[i])
            out.append(r)
            info.append(d)
        return out, info
