"""Beam search for the mean prompt: append, insert anywhere, prune words, until no move helps.

Objective = mean over targets of cos(e(candidate), e(target))**3. Speed comes from:
- the target embeddings are normalised once and cached;
- candidates are encoded in batches;
- the vocabulary is pre-ranked cheaply: mean pooling makes e(s + w) close to the token-weighted
  mix normalize(e(s) + a e(w)), a = tokens(w) / tokens(s). With e(w).T cached for every word, the
  objective of that mix is a few matrix ops for the whole vocabulary; only the top words reach the
  expensive encoder. `prerank=0` turns this off (exhaustive, the benchmark baseline).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import constants as C
from ..csvio import atomic_write_json
from ..progress import progress
from ..score.metric import scs_against_many, scs_matrix, sharpen


@dataclass
class OptimizeConfig:
    beam: int = 4
    steps: int = 30
    prerank: int = 256  # words per beam string sent to the encoder for appends; 0 = all (exhaustive)
    insert_words: int = 16  # top words tried at every insertion position
    max_tokens: int = 96  # <= 128 metric tokens; leaves room when combined with a prediction
    min_gain: float = 1e-5
    moves: tuple[str, ...] = ("append", "insert", "prune")
    seed: int = C.DEFAULT_SEED

    def __post_init__(self):
        if not 1 <= self.max_tokens <= C.MAX_PROMPT_TOKENS:
            raise ValueError(f"max_tokens must be in 1..{C.MAX_PROMPT_TOKENS}")
        if self.beam < 1 or self.steps < 0 or self.prerank < 0:
            raise ValueError("beam >= 1, steps >= 0, prerank >= 0")
        self.moves = tuple(self.moves)
        bad = set(self.moves) - {"append", "insert", "prune"}
        if bad or not self.moves:
            raise ValueError(f"moves: unknown {sorted(bad)}; use append, insert, prune")


@dataclass
class SearchState:
    beam: list[tuple[str, float]] = field(default_factory=list)
    trajectory: list[dict] = field(default_factory=list)
    done: bool = False


PRERANK_TARGETS = 2000


class MeanPromptOptimizer:
    def __init__(self, embedder, targets: list[str], vocab: list[str], cfg: OptimizeConfig,
                 heldout: list[str] | None = None, log=print, weights=None, encode_cached=None,
                 pieces: list[str] | None = None):
        self.emb, self.cfg, self.log = embedder, cfg, log
        # Targets and vocabulary are encoded once; a content-hash cache (eval) makes refits cheap.
        enc = encode_cached or embedder.encode
        self.T = enc(targets)  # normalised
        # Per-target weights (sources weighed against each other); uniform when None.
        w = np.ones(len(targets)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(targets),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights: one non-negative weight per target, not all zero")
        self.w = (w / w.sum()).astype(np.float32)
        self.H = embedder.encode(heldout) if heldout else None
        words = set(w for w in vocab if w.strip())
        self.vocab = sorted(words | set(p for p in pieces or [] if p.strip()))
        # Tokenizer pieces are a second pool with its own share of the pre-rank: ~25k pieces ranked with the
        # words would crowd out the words the approximation ranks well (measured: a worse local optimum).
        self.is_piece = np.array([w not in words for w in self.vocab], dtype=bool)
        self.V = enc(self.vocab)  # cheap pre-rank features
        # The pre-ranker only orders words, so a weighted sample of the targets serves it: with ~15k
        # targets the full word x target table made each step 5x slower for the same order.
        self.T_pre, self.w_pre = self._prerank_targets(PRERANK_TARGETS, cfg.seed)
        self.VT = self.V @ self.T_pre.T  # word x target cosines, cached for the pre-ranker
        self.tok = embedder.tokenizer
        self.word_tokens = np.array([len(self.tok(w, add_special_tokens=False)["input_ids"]) for w in self.vocab])
        self._cache: dict[str, float] = {}
        self.encoded = 0
        self.encode_s = 0.0

    def _prerank_targets(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.T) <= n:
            return self.T, self.w
        rng = np.random.default_rng(seed)
        idx, counts = np.unique(rng.choice(len(self.T), size=n, p=self.w / self.w.sum()), return_counts=True)
        return self.T[idx], (counts / counts.sum()).astype(np.float32)

    # --- objective ---------------------------------------------------------------------------
    def score_many(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            t0 = time.perf_counter()
            e = self.emb.encode(new)
            self.encode_s += time.perf_counter() - t0
            self.encoded += len(new)
            for t, s in zip(new, scs_matrix(e, self.T) @ self.w):
                self._cache[t] = float(s)
        return np.array([self._cache[t] for t in texts])

    def heldout_score(self, text: str) -> float | None:
        if self.H is None:
            return None
        return float(scs_against_many(self.emb.encode([text]), self.H)[0])

    def n_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=True)["input_ids"])

    # --- moves -------------------------------------------------------------------------------
    def _ranked_words(self, text: str, k: int) -> list[str]:
        if k <= 0:
            return self.vocab
        if not text:
            approx = self.VT
        else:
            e = self.emb.encode([text])[0]
            a = (self.word_tokens / max(1, len(self.tok(text, add_special_tokens=False)["input_ids"])))[:, None]
            norm = np.sqrt(1 + a[:, 0] ** 2 + 2 * a[:, 0] * (self.V @ e))[:, None]
            approx = ((e @ self.T_pre.T)[None, :] + a * self.VT) / norm
        est = sharpen(approx) @ self.w_pre
        out = []
        for pool, n in ((~self.is_piece, k), (self.is_piece, max(1, k // 2))):  # words, then pieces (if any)
            ids = np.flatnonzero(pool)
            if n < len(ids):
                ids = ids[np.argpartition(-est[ids], n)[:n]]
            out += [self.vocab[i] for i in ids]
        return out

    def candidates(self, text: str) -> list[str]:
        words, moves, out = text.split(), self.cfg.moves, []
        if "append" in moves:
            out += [f"{text} {w}".strip() for w in self._ranked_words(text, self.cfg.prerank)]
        top = self._ranked_words(text, self.cfg.insert_words) if words and "insert" in moves else []
        for i in range(len(words)):  # insertion before word i
            out += [" ".join(words[:i] + [w] + words[i:]) for w in top]
        if len(words) > 1 and "prune" in moves:  # drop each word that may have stopped helping
            out += [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
        return out

    # --- search ------------------------------------------------------------------------------
    def run(self, state: SearchState | None = None, out: str | Path | None = None) -> SearchState:
        st = state or SearchState()
        if not st.beam:
            st.beam = [("", -1.0)]
        bar = progress(self.cfg.steps, "meanprompt", "step", initial=len(st.trajectory))
        while not st.done and len(st.trajectory) < self.cfg.steps:
            t0, enc0 = time.perf_counter(), self.encoded
            best_before = st.beam[0][1]
            cands = list(dict.fromkeys(c for text, _ in st.beam for c in self.candidates(text)))
            cands = [c for c in cands if c and self.n_tokens(c) <= self.cfg.max_tokens]
            scores = self.score_many(cands) if cands else np.array([])
            pool = dict(st.beam)
            pool.update(zip(cands, scores.tolist()))
            st.beam = sorted(pool.items(), key=lambda kv: -kv[1])[: self.cfg.beam]
            best, score = st.beam[0]
            dt = time.perf_counter() - t0
            st.trajectory.append({"step": len(st.trajectory) + 1, "prompt": best, "score": round(score, 6),
                                  "heldout": self.heldout_score(best), "candidates": len(cands),
                                  "encoded": self.encoded - enc0, "seconds": round(dt, 3),
                                  "candidates_per_s": round((self.encoded - enc0) / dt, 1) if dt else None})
            bar.update(1)
            bar.set_postfix(score=f"{score:.4f}")
            if score - best_before < self.cfg.min_gain:
                st.done = True  # no move improves: a local optimum
            if out:
                self.save(st, out)
        bar.close()
        return st

    def save(self, st: SearchState, path: str | Path) -> None:
        best, score = st.beam[0]
        atomic_write_json(path, {
            "format_version": C.MANIFEST_FORMAT_VERSION, "prompt": best, "tokens": self.n_tokens(best),
            "scores": {"train": round(score, 6), "heldout": self.heldout_score(best), "targets": len(self.T),
                       "heldout_targets": None if self.H is None else len(self.H),
                       "embedder": str(self.emb.spec.path), "proxy": self.emb.spec.is_proxy},
            "config": asdict(self.cfg), "state": {"beam": st.beam, "done": st.done}, "trajectory": st.trajectory})


def load_state(path: str | Path) -> SearchState:
    d = json.loads(Path(path).read_text())
    return SearchState([tuple(x) for x in d["state"]["beam"]], d["trajectory"], d["state"]["done"])


def vocab_from_texts(texts: list[str], min_count: int = 2, max_words: int = 3000) -> list[str]:
    """The most frequent words (letters only, as written lower-case) of the targets."""
    c = Counter(w.strip(".,;:!?\"'()*").lower() for t in texts for w in t.split())
    return [w for w, n in c.most_common() if n >= min_count and w.isalpha()][:max_words]


def vocab_from_tokenizer(tokenizer, max_words: int = 0) -> list[str]:
    """The metric embedder's own pieces that stand alone as one token when written as a word:
    sentencepiece pieces that open a word ('\u2581lucrarea' -> 'lucrarea', sentence-t5) or wordpieces
    that are not continuations ('##ing'), for the proxy. Taken from the tokenizer alone, never from any
    target, so a held-out prompt cannot leak through it. In tokenizer order (sentencepiece: by score);
    max_words=0 keeps all."""
    vocab = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_tokens", []))
    spm = any(p.startswith("\u2581") for p in vocab)
    words = []
    for piece, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
        if piece in special or (spm and not piece.startswith("\u2581")) or piece.startswith("##"):
            continue
        w = piece.lstrip("\u2581")
        if len(w) > 1 and any(ch.isalpha() for ch in w) and not (w.startswith("[") and w.endswith("]")) \
                and not (w.startswith("<") and w.endswith(">")):
            words.append(w)
    words = list(dict.fromkeys(words))
    if words:  # keep only what the tokenizer writes back as exactly that one piece
        ids = tokenizer(words, add_special_tokens=False)["input_ids"]
        words = [w for w, t in zip(words, ids) if len(t) == 1]
    return words[:max_words] if max_words else words


def plot_trajectory(traj: list[dict], path: str | Path) -> None:
    import matplotlib  # matplotlib: heavy, only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([t["step"] for t in traj], [t["score"] for t in traj], marker=".", label="train targets")
    if traj and traj[0].get("heldout") is not None:
        ax.plot([t["step"] for t in traj], [t["heldout"] for t in traj], marker=".", label="held-out targets")
    ax.set(xlabel="step", ylabel="mean SCS", title="mean-prompt search")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
