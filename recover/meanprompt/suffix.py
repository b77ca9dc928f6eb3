"""A suffix fitted to FOLLOW a predictor's own predictions (1st place: joined predictions + a suffix
tuned for the metric, 0.65 -> 0.71).

The mean prompt is fitted to stand alone; appended to a prediction that is already close it pulls
the string away (measured: the shipped adapter's `llm+mean` below `llm` on gemma_rewrites_b). Here
the objective is the one the submission is scored on:

    mean_i cos(e(cap(pred_i + " " + s)), e(true_i))**3

with pred_i the predictor's OUT-OF-FOLD prediction for row i (on-policy: what it will really be
followed by) and cap the 128-token cut `recover predict` applies. The search is the mean prompt's
(optimize.py: append / insert / prune over a pre-ranked vocabulary); its beam starts from "" (the
prediction alone) and the mean prompt, so on the training rows the suffix is never worse than
either. Each candidate costs one encoding per training row, so the rows are a seeded sample.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import constants as C
from ..csvio import atomic_write_json, read_table, write_submission
from ..data.pairs_io import load_pairs
from ..models.shipped import ASSETS
from ..score.embedder import Embedder, TokenCap
from ..score.metric import scs_rows
from .optimize import MeanPromptOptimizer, OptimizeConfig, SearchState, vocab_from_texts
from .prompt import MeanPrompt, combine

SUFFIX_DEFAULTS = {"beam": 2, "steps": 12, "prerank": 24, "insert_words": 4, "max_tokens": 48}


class SuffixOptimizer(MeanPromptOptimizer):
    def __init__(self, embedder, preds: list[str], truths: list[str], vocab: list[str], cfg: OptimizeConfig,
                 cap=None, log=print, encode_cached=None):
        if len(preds) != len(truths) or not preds:
            raise ValueError("suffix fit: one prediction per training row, at least one row")
        super().__init__(embedder, truths, vocab, cfg, log=log, encode_cached=encode_cached)
        self.preds = [p or "" for p in preds]
        self.cap = cap or (lambda s: s)

    def joined(self, suffix: str) -> list[str]:
        """What `recover predict --combine pred+suffix` submits for each row (a blank prediction: the suffix)."""
        return [self.cap(combine(p, suffix, "pred+mean")) if suffix else (p or " ") for p in self.preds]

    def score_many(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for t in new:  # the objective is row-wise: every candidate is encoded after every prediction
            t0 = time.perf_counter()
            e = self.emb.encode(self.joined(t))
            self.encode_s += time.perf_counter() - t0
            self.encoded += len(self.preds)
            self._cache[t] = float(scs_rows(e, self.T) @ self.w)
        return np.array([self._cache[t] for t in texts])


def fit_suffix(embedder, preds: list[str], truths: list[str], vocab: list[str], mean_prompt: str,
               cfg: OptimizeConfig | None = None, cap=None, log=print, encode_cached=None) -> dict:
    """-> {suffix, scores: {alone, mean, suffix} on the training rows, rows, trajectory, config}."""
    cfg = cfg or OptimizeConfig(**SUFFIX_DEFAULTS)
    opt = SuffixOptimizer(embedder, preds, truths, vocab, cfg, cap=cap, log=log, encode_cached=encode_cached)
    start = ["", mean_prompt]
    first = opt.score_many(start)
    state = SearchState(beam=sorted(zip(start, first.tolist()), key=lambda kv: -kv[1])[: cfg.beam])
    t0 = time.time()
    state = opt.run(state)
    best, score = state.beam[0]
    log(f"suffix fit on {len(preds)} rows: alone {first[0]:.4f}, + mean {first[1]:.4f}, + suffix {score:.4f} "
        f"({time.time() - t0:.0f} s, {opt.encoded} strings encoded): {best!r}")

    return {"suffix": best, "rows": len(preds), "seconds": round(time.time() - t0, 1),
            "scores": {"alone": round(float(first[0]), 5), "mean": round(float(first[1]), 5), "suffix": round(score, 5)},
            "trajectory": state.trajectory, "config": asdict(cfg)}


def run_suffix(pred: str, data: list[str], out: str, rows: int = 200, seed: int = 1234, embedder: str | None = None,
               mean_prompt: str | None = None, apply_to: list[str] = (), into: str | None = None,
               make_default: bool = False, cfg: OptimizeConfig | None = None, log=print) -> dict:
    """Fit a suffix on `pred` (a submission CSV of a predictor's out-of-fold predictions) against the true
    prompts of those ids in `data`; write it to `out`; join it to other prediction files (`apply_to`, each
    written beside itself as *.suffix.csv, capped as predict caps); and optionally into an artifact."""
    truth = load_pairs(data).drop_duplicates(C.COL_ID).set_index(C.COL_ID)[C.COL_PROMPT]
    p = read_table(pred, (C.COL_ID, C.COL_PROMPT))
    missing = [i for i in p[C.COL_ID] if i not in truth.index]
    if missing:
        raise ValueError(f"--pred {pred}: id {missing[0]!r} has no true prompt in --data")
    vocab = vocab_from_texts(list(truth.reindex(p[C.COL_ID])))  # the training rows' own prompts, as mean's "words"
    sample = p.sample(n=min(rows, len(p)), random_state=seed)
    emb = Embedder.resolve(embedder, dtype="auto")  # the search's candidates: bf16 where the CPU has it
    cap = TokenCap.from_spec(emb.spec)
    mean = MeanPrompt.load(mean_prompt).prompt
    fit = fit_suffix(emb, list(sample[C.COL_PROMPT]), list(truth.reindex(sample[C.COL_ID])), vocab, mean, cfg,
                     cap=cap, log=log)
    fit.update(pred=str(pred), pred_sha=hashlib.sha256(Path(pred).read_bytes()).hexdigest()[:16],
               data=[Path(d).name for d in data], seed=seed, embedder=str(emb.spec.path), proxy=emb.spec.is_proxy)
    atomic_write_json(out, fit)
    log(f"wrote {out}")
    for f in apply_to:
        d = read_table(f, (C.COL_ID, C.COL_PROMPT))
        dest = str(Path(f).with_suffix(".suffix.csv"))
        write_submission(dest, list(d[C.COL_ID]), [cap(combine(x, fit["suffix"], "pred+suffix")) if fit["suffix"] else x
                                                   for x in d[C.COL_PROMPT]])
        log(f"wrote {dest} (each prediction + the suffix, capped at {C.MAX_PROMPT_TOKENS} tokens)")
    if into:
        write_into_artifact(into, fit, make_default, log)
    return fit


def write_into_artifact(into: str, fit: dict, make_default: bool, log=print) -> None:
    """The suffix ships inside the artifact whose predictions it was fitted to follow: a LoRA manifest
    (a name under recover/assets/lora or a folder) or an embed-predictor folder."""
    d = Path(into)
    if not d.is_dir():
        d = ASSETS / C.LORA_ASSETS_DIR / into
    mf = d / C.MANIFEST_FILE
    if not mf.is_file():
        raise FileNotFoundError(f"--into {into}: no {C.MANIFEST_FILE} (a LoRA name or an artifact folder)")
    m = json.loads(mf.read_text())
    m["suffix"] = fit["suffix"]
    m["suffix_fit"] = {k: fit[k] for k in ("rows", "scores", "data", "pred_sha", "seed", "proxy", "config")}
    if make_default:
        m["combine"] = "pred+suffix"
    atomic_write_json(mf, m)
    log(f"suffix written into {mf}" + (" (its default combine: pred+suffix)" if make_default else ""))
