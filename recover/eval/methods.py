"""Predictors that `recover eval` fits on a fold's training rows and scores on its validation rows.

Each method's `fit` sees ONLY the training rows it is given (the ids are recorded, and a test
asserts no held-out id is among them); hyper-parameters are chosen by inner folds on those rows
(leave-one-source-out among the training sources when there are two or more). The fitted object
is the runtime predictor itself, so what is scored is what ships.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_json
from ..data.prompt_bank import generate_bank
from ..data.protocols import grouped_kfold, loso_folds, normalise_prompt
from ..meanprompt.optimize import MeanPromptOptimizer, OptimizeConfig, vocab_from_texts, vocab_from_tokenizer
from ..meanprompt.probes import probe_weights
from ..meanprompt.prompt import DEFAULT_MEAN_PROMPT_PATH, MeanPrompt
from ..meanprompt.suffix import SUFFIX_DEFAULTS
from ..predict.embed import EmbedPredictor, features, fit_ridge, normalise
from ..predict.invert import InvertConfig
from ..score.metric import scs_matrix

ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0)


@dataclass
class Rows:
    """One side of a fold: the rows and their cached embeddings (prompt embeddings: truth)."""
    df: pd.DataFrame
    eo: np.ndarray
    er: np.ndarray
    ep: np.ndarray
    live: np.ndarray  # both texts present

    def take(self, idx) -> "Rows":
        idx = np.asarray(idx)
        return Rows(self.df.iloc[idx].reset_index(drop=True), self.eo[idx], self.er[idx], self.ep[idx], self.live[idx])

    @property
    def ids(self) -> list[str]:
        return list(self.df[C.COL_ID])


@dataclass
class FitSettings:
    """What every fit may use besides the training rows. Nothing here may come from held-out rows."""
    source_weights: dict[str, float] = field(default_factory=dict)  # default weight 1.0
    extra_targets: list[str] = field(default_factory=list)  # prompt files (no texts) for the mean prompt
    extra_weight: float = 0.0  # their total weight relative to the training rows' total
    bank_size: int = 2000
    extra_bank: list[str] = field(default_factory=list)  # user prompt files added to the decoding bank
    # Sized so one fit takes ~1 min here on ~15k weighted targets; the search stops earlier at a local optimum.
    search: OptimizeConfig = field(default_factory=lambda: OptimizeConfig(beam=3, steps=20, prerank=192,
                                                                          insert_words=12, max_tokens=64))
    vocab_size: int = 3000
    # the mean-prompt search vocabulary: "words" (the training targets' words) or "words+pieces" (plus every
    # piece of the metric embedder's tokenizer: sentencepiece for sentence-t5, wordpieces for the proxy)
    vocab: str = "words"
    # leaderboard probes (prompt, public score): target weights are matched to them (meanprompt/probes.py)
    probes: list[tuple[str, float]] = field(default_factory=list)
    probe_groups: int = 24
    inner_k: int = 3  # prompt-grouped inner folds when the training rows come from one source
    invert: InvertConfig = field(default_factory=InvertConfig)  # embed-invert, llm+invert (predict/invert.py)
    suffix: OptimizeConfig = field(default_factory=lambda: OptimizeConfig(**SUFFIX_DEFAULTS))  # llm+suffix's search
    pool_rows: int = 300  # LLM answers on training rows the adapter never saw: what llm+suffix / llm+gate fit on
    seed: int = C.DEFAULT_SEED

    def __post_init__(self):
        if self.vocab not in VOCABS:
            raise ValueError(f"--vocab {self.vocab!r}: choose one of {', '.join(VOCABS)}")
        if self.probes and len(self.probes) < 2:
            raise ValueError("--probes: at least 2 probe prompts with their leaderboard scores")
        if self.pool_rows < 1:
            raise ValueError("--pool-rows must be >= 1")
        negative = [k for k, v in self.source_weights.items() if v < 0]
        if negative:
            raise ValueError(f"--source-weight {negative[0]}: a weight is >= 0")


VOCABS = ("words", "words+pieces")


# --- the mean prompt ----------------------------------------------------------------------------
def mean_targets(df: pd.DataFrame, s: FitSettings, exclude: set[str] = frozenset()) -> tuple[list[str], np.ndarray]:
    """Unique target prompts and their weights: rows (their prompt and source columns) weighted by source,
    plus the prompt files."""
    w: dict[str, float] = {}
    for p, so in zip(df[C.COL_PROMPT], df[C.COL_SOURCE]):
        w[p] = w.get(p, 0.0) + s.source_weights.get(so, 1.0)
    total = sum(w.values())
    extra = [t for t in dict.fromkeys(s.extra_targets) if t not in w and normalise_prompt(t) not in exclude]
    if extra and s.extra_weight > 0:
        for t in extra:
            w[t] = s.extra_weight * total / len(extra)
    keys = [k for k, v in w.items() if v > 0]
    return keys, np.array([w[k] for k in keys])


def search_vocab(targets: list[str], s: FitSettings, embedder) -> tuple[list[str], list[str]]:
    """(the training targets' words, the embedder tokenizer's pieces with vocab=words+pieces, else [])."""
    words = vocab_from_texts(targets, max_words=s.vocab_size)
    return words, vocab_from_tokenizer(embedder.tokenizer) if s.vocab == "words+pieces" else []


def matched_weights(targets: list[str], weights: np.ndarray, s: FitSettings, cache, log=print) -> np.ndarray:
    """The targets' weights matched to the leaderboard probes (unchanged without probes)."""
    if not s.probes:
        return weights
    w, rep = probe_weights(cache.encode(targets), weights, cache.encode([p for p, _ in s.probes]),
                           [v for _, v in s.probes], groups=s.probe_groups, seed=s.seed)
    log(f"    probes: {rep['probes']} matched over {rep['groups']} target groups, rmse {rep['rmse_before']:.4f} -> "
        f"{rep['rmse_after']:.4f} ({rep['group_weight_moved']:.0%} of the weight moved)")
    return w * weights.sum()


def fit_mean(train: Rows, s: FitSettings, embedder, cache, exclude: set[str] = frozenset(),
             store: str | Path | None = "build/cache/meanprompt", log=print) -> MeanPrompt:
    """Beam search on the weighted targets; results are stored by a hash of (targets, weights, config)."""
    targets, weights = mean_targets(train.df, s, exclude)
    weights = matched_weights(targets, weights, s, cache, log)
    vocab, pieces = search_vocab(targets, s, embedder)
    key = hashlib.sha256(json.dumps([targets, np.round(weights, 6).tolist(), vocab, s.search.__dict__,
                                     cache.path.name if cache.path else ""] + ([pieces] if pieces else []),
                                    default=str).encode()).hexdigest()[:16]
    f = Path(store) / f"mean-{key}.json" if store else None
    if f and f.is_file():
        d = json.loads(f.read_text())
        return MeanPrompt(d["prompt"], str(f), d["scores"])
    opt = MeanPromptOptimizer(embedder, targets, vocab, s.search, log=lambda *a: None, weights=weights,
                              encode_cached=cache.encode, pieces=pieces)
    st = opt.run()
    best, score = st.beam[0]
    log(f"    mean prompt: {len(targets)} targets, {len(st.trajectory)} steps, weighted SCS {score:.4f}: {best!r}")
    mp = MeanPrompt(best, f"fit:{key}", {"weighted_train_scs": round(score, 6), "targets": len(targets),
                                          "steps": len(st.trajectory)})
    if f:
        atomic_write_json(f, {"prompt": best, "scores": mp.scores})
    return mp


def shipped_mean() -> MeanPrompt:
    return MeanPrompt.load(str(DEFAULT_MEAN_PROMPT_PATH))


# --- the embed predictor ------------------------------------------------------------------------
def candidate_strings(mean: str, bank: list[str]) -> list[str]:
    """The decoding vocabulary: the mean prompt, each bank prompt, and each joined with the mean."""
    return list(dict.fromkeys([mean] + bank + [f"{b} {mean}" for b in bank] + [f"{mean} {b}" for b in bank]))


def project_bank(s: FitSettings, exclude: set[str] = frozenset()) -> list[str]:
    """The project's bank + --bank-file lines; lines whose normalised prompt is held out are purged
    (a user's prompt list may hold the very prompts being scored)."""
    return [b.prompt for b in generate_bank(s.bank_size, s.seed)] + \
        [b for b in s.extra_bank if normalise_prompt(b) not in exclude]


def inner_folds(tr: Rows, s: FitSettings):
    """Hyper-parameters must survive a change of source, as the held-out source will be one: with two
    or more training sources the inner folds hold each out in turn; otherwise prompt-grouped k-fold."""
    if tr.df[C.COL_SOURCE].nunique() >= 2:
        return loso_folds(tr.df[C.COL_SOURCE], tr.df[C.COL_PROMPT])
    return grouped_kfold(list(tr.df[C.COL_PROMPT]), s.inner_k, s.seed)


def row_weights(rows: Rows, s: FitSettings) -> np.ndarray:
    """--source-weight for the ridge: each row weighs what its source does (default 1)."""
    return np.array([s.source_weights.get(so, 1.0) for so in rows.df[C.COL_SOURCE]], dtype=np.float64)


def _ridge_pred(tr: Rows, va: Rows, alpha: float, s: FitSettings) -> np.ndarray:
    W, xm, ym = fit_ridge(features(tr.eo, tr.er), tr.ep, alpha, row_weights(tr, s))
    return normalise((features(va.eo, va.er) - xm) @ W + ym)


def fit_embed(train: Rows, s: FitSettings, mean: MeanPrompt, cache, embedder, log=print,
              exclude: set[str] = frozenset()) -> EmbedPredictor:
    """Ridge + nearest-candidate decoding, alpha chosen by the DECODED SCS on inner folds: the ridge's
    own cos(pred, true) prefers heavy shrinkage, which collapses every prediction onto one hedge and
    decodes worse on a new source (seen once on held-out gemma_rewrites_a; test_embed_predictor recomputes
    the choice)."""
    tr = train.take(np.flatnonzero(train.live))
    cands = candidate_strings(mean.prompt, project_bank(s, exclude))
    B = cache.encode(cands)
    inner = inner_folds(tr, s)
    scores: dict[float, list[float]] = {a: [] for a in ALPHAS}
    for f in inner:
        a, b = tr.take(f.train), tr.take(f.val)
        truth = scs_matrix(b.ep, B)  # every candidate's real score on each inner-val row
        for alpha in ALPHAS:
            pick = np.argmax(_ridge_pred(a, b, alpha, s) @ B.T, 1)
            scores[alpha].append(float(np.mean(truth[np.arange(len(pick)), pick])))
    alpha = max(ALPHAS, key=lambda x: np.mean(scores[x]))
    W, xm, ym = fit_ridge(features(tr.eo, tr.er), tr.ep, alpha, row_weights(tr, s))
    manifest = {"format_version": C.EMBED_FORMAT_VERSION, "kind": "embed_predictor", "decode": "nearest",
                "alpha": alpha, "mean_prompt": mean.prompt, "candidates": len(cands), "bank_size": s.bank_size,
                "inner_cv": {"folds": [f.name for f in inner], "scs_by_alpha": {str(k): round(float(np.mean(v)), 5)
                                                                                for k, v in scores.items()}},
                "train_rows": len(tr.df)}
    log(f"    nearest: alpha={alpha}, inner-fold SCS {np.mean(scores[alpha]):.4f}")
    return EmbedPredictor(W, xm, ym, cands, B, embedder, manifest)
