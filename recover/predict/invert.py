"""Per-row embedding inversion (2nd place): edit a string until its embedding matches a predicted one.

The embed predictor gives each row a predicted prompt embedding t_i. Starting from a candidate string
(the embed predictor's nearest candidate, or the LLM's answer + the mean prompt), greedy edits over a
vocabulary pre-ranked per row by cos(e(word), t_i) keep whichever edited string has the highest
cos(e(string), target):

    append a word | put a word in front | replace a word | delete a word

until no edit gains `min_gain`, or the row's budget is spent: `max_edits` edits of at most `exact`
encoded candidates each. The budget is WORK, never seconds, so the same rows give the same strings on an
idle machine and a loaded one. The clock is read only where the run has a deadline (`--time-budget`): edits
stop there, the rows cut keep the string they had reached, they are counted (`Inverter.deadline_bound`) and
the predictor says so in the run log, since only then do the strings depend on the machine's speed. (A fixed
seconds guard, 1 s a row, once stood here: beside two busy jobs on a 2-core EPYC it bound on 8 of 30 rows,
so the default's output changed with load.)

Encoding every one-edit neighbour costs ~100 encoder calls per edit. `exact=K` encodes only the K
neighbours ranked best by an additive estimate: both metric embedders mean-pool their tokens, so a
string's embedding moves roughly by the embedding of a word added or removed,
    u(c) = |cur| e(cur) + sum_{w in c} e(w) - sum_{w in cur} e(w),   estimate = cos(u(c), target)
(word embeddings from the vocabulary, the start's own words encoded once); the K are then encoded for
real and the best kept only if it really gains. The predicted embedding is noisy (its cosine to the truth is far from 1), so the target can
be blended toward the start's own embedding (`blend`): 0 = the prediction alone, 1 = stay put.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..score.metric import normalise


# keys older artifacts' "invert" config may hold that no longer mean anything: read and dropped, never an error
RETIRED_KEYS = ("max_seconds",)  # the wall-clock guard, replaced by the run's deadline


def _clock() -> Callable[[], float]:
    """The deadline's clock (time.monotonic, as the runner's), looked up per Inverter: a test swaps in a
    virtual one."""
    return time.monotonic


@dataclass
class InvertConfig:
    max_edits: int = 4  # per row
    top_words: int = 16  # the row's pre-ranked words tried as appends / fronts
    replace_words: int = 2  # of those, the best few tried in every position
    blend: float = 0.0  # target = normalise((1 - blend) * predicted + blend * e(start))
    min_gain: float = 1e-4  # in cosine
    max_words: int = 60  # never grow a string past this (the metric cuts at 128 tokens)
    exact: int = 8  # K: encode only the K best neighbours by the additive estimate; 0: every neighbour

    def __post_init__(self):
        if self.max_edits < 0:
            raise ValueError("invert: max_edits >= 0")
        if not 0.0 <= self.blend <= 1.0:
            raise ValueError(f"invert: blend {self.blend} is not in [0, 1]")
        if self.exact < 0:
            raise ValueError("invert: exact >= 0")
        if self.top_words < 1 or not 0 <= self.replace_words <= self.top_words:
            raise ValueError("invert: top_words >= 1 and 0 <= replace_words <= top_words")

    @classmethod
    def from_manifest(cls, config: dict) -> "InvertConfig":
        """An artifact's recorded settings: a retired key is dropped, any other unknown key is an error."""
        return cls(**{k: v for k, v in config.items() if k not in RETIRED_KEYS})


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
                 clock: Callable[[], float] | None = None):
        if len(vocab) != len(vocab_emb) or not len(vocab):
            raise ValueError("invert: one embedding per vocabulary word, at least one word")
        self.encode, self.vocab, self.V = encode, list(vocab), np.asarray(vocab_emb, np.float32)
        self.cfg, self.cap = cfg or InvertConfig(), cap or (lambda s: s)
        self.clock = clock or _clock()
        self._word = {w: i for i, w in enumerate(self.vocab)}
        self._extra: dict[str, np.ndarray] = {}  # words met in start strings, encoded once
        self.deadline_bound = 0  # rows whose edits the run's deadline cut short (their strings depend on speed)

    def word_vectors(self, words: list[str]) -> np.ndarray:
        new = [w for w in dict.fromkeys(words) if w not in self._word and w not in self._extra]
        if new:
            self._extra.update(zip(new, self.encode(new)))
        return np.stack([self.V[self._word[w]] if w in self._word else self._extra[w] for w in words])

    def shortlist(self, cur: list[str], e_cur: np.ndarray, cands: list[list[str]], target: np.ndarray) -> list[list[str]]:
        """The `exact` candidates with the best additive estimate (module docstring)."""
        if len(cands) <= self.cfg.exact:
            return cands
        flat = [w for c in cands for w in c]
        W = self.word_vectors(flat + cur)
        starts = np.cumsum([0] + [len(c) for c in cands[:-1]])
        sums = np.add.reduceat(W[: len(flat)], starts, axis=0) if flat else np.zeros((len(cands), W.shape[1]))
        sums[[len(c) == 0 for c in cands]] = 0.0
        u = len(cur) * e_cur - W[len(flat):].sum(0) + sums
        est = (u @ target) / np.maximum(np.linalg.norm(u, axis=1), 1e-9)
        return [cands[i] for i in np.argsort(-est)[: self.cfg.exact]]

    def row(self, start: str, predicted: np.ndarray, start_emb: np.ndarray | None = None,
            deadline: float | None = None) -> tuple[str, dict]:
        out, info = self.rows([start], np.asarray(predicted)[None],
                              None if start_emb is None else np.asarray(start_emb)[None], deadline)
        return out[0], info[0]

    def rows(self, starts: list[str], predicted: np.ndarray, start_emb: np.ndarray | None = None,
             deadline: float | None = None) -> tuple[list[str], list[dict]]:
        """Each row edited greedily toward its target, all rows in lockstep so each encoder call holds every
        active row's candidates (short strings batch far better together than ~8 at a time); a row's result
        does not depend on the others (tested). Edits are budgeted per row in work; `deadline` (the clock's
        time, the run's --time-budget) is checked before each round of edits, and without one the clock is
        never read for a decision."""
        c, n = self.cfg, len(starts)
        t0 = self.clock()
        cur = [s.split() for s in starts]
        E0 = self.encode(list(starts)) if start_emb is None else np.asarray(start_emb, np.float32)
        T = normalise((1 - c.blend) * np.asarray(predicted, np.float32) + c.blend * E0)
        best, e_cur = (E0 * T).sum(1), E0.copy()
        tops = np.argsort(-(T @ self.V.T), axis=1)[:, :c.top_words]
        done = [0] * n
        stop = ["edits"] * n
        active = list(range(n)) if c.max_edits > 0 else []
        while active:
            if deadline is not None and self.clock() >= deadline:
                for i in active:
                    stop[i] = "deadline"
                self.deadline_bound += len(active)
                break
            jobs: list[tuple[int, str]] = []
            for i in list(active):
                near = [w for w in edits(cur[i], [self.vocab[j] for j in tops[i]], c.replace_words, c.max_words) if w]
                if c.exact and near:
                    near = self.shortlist(cur[i], e_cur[i], near, T[i])
                cands = [s for s in dict.fromkeys(self.cap(" ".join(w)) for w in near) if s.strip()]
                if not cands:
                    stop[i] = "no edit"
                    active.remove(i)
                jobs += [(i, s) for s in cands]
            if not jobs:
                break
            E = self.encode([s for _, s in jobs])
            rows_of = np.array([i for i, _ in jobs])
            sc = (E * T[rows_of]).sum(1)
            for i in list(active):
                k = np.flatnonzero(rows_of == i)
                b = k[int(np.argmax(sc[k]))]
                if sc[b] - best[i] < c.min_gain:
                    stop[i] = "converged"
                    active.remove(i)
                    continue
                cur[i], best[i], e_cur[i], done[i] = jobs[b][1].split(), sc[b], E[b], done[i] + 1
                if done[i] >= c.max_edits:
                    active.remove(i)
        spent = round((self.clock() - t0) / max(n, 1), 3)
        out = [" ".join(w) if w else s for w, s in zip(cur, starts)]
        return out, [{"edits": done[i], "stop": stop[i], "cos": round(float(best[i]), 5), "seconds": spent}
                     for i in range(n)]
