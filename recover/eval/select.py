"""The selection rule: which held-out folds CHOOSE a default, and how.

The hidden test is Gemma-7b-it rewrites under plain instructions, so a default is chosen on the Gemma
folds only (sources named `gemma*`); the other folds are printed beside it as robustness, never read.

Rule ("gemma-macro, no Gemma fold lost"): among the methods that are not below the mean prompt fitted on
the same rows on ANY selection fold, the one with the best macro mean over the selection folds. Why the
macro and not the row-weighted mean: gemma_rewrites_d has 3,000 rows against 518 and 947, and a rule
weighted by rows would be the d fold alone. Why the guard and not the worst fold alone: the worst of three
is one fold's noise; the guard keeps the worst-case promise (no Gemma source gets worse) and the macro
ranks what passes it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import constants as C
from ..score.stats import bootstrap_ci

RULE = "gemma-macro, no Gemma fold below the mean prompt"


def selection_sources(sources, select_on: list[str] | None = None) -> list[str]:
    """The folds that choose: `select_on` if given, else every source named gemma*, else (no Gemma
    source at all, e.g. a user's own data) every source."""
    names = list(dict.fromkeys(str(s) for s in sources))
    if select_on:
        unknown = sorted(set(select_on) - set(names))
        if unknown:
            raise ValueError(f"--select-on {', '.join(unknown)}: not a source (sources: {', '.join(names)})")
        return [s for s in names if s in select_on]
    gemma = [s for s in names if s.lower().startswith(C.SELECT_SOURCE_PREFIX)]
    return gemma or names


def rule_figures(per_row: pd.DataFrame, select: list[str], n_boot: int = 1000, seed: int = 1234) -> pd.DataFrame:
    """Per method: the macro over the selection folds (+ bootstrap interval: rows resampled within each
    fold), the worst selection fold, and the macro over all folds (printed, not used)."""
    rng = np.random.default_rng(seed)
    out = []
    for m, g in per_row.groupby("method", sort=False):
        by = {s: gs.scs.to_numpy(np.float64) for s, gs in g.groupby("source")}
        sel = [by[s] for s in select if s in by]
        if len(sel) < len(select):  # not scored on every fold that chooses: no rule figure (shared_ranking compares it)
            out.append({"method": m, "rule": np.nan, "rule_low": np.nan, "rule_high": np.nan, "worst": np.nan,
                        "macro": float(np.mean([v.mean() for v in by.values()]))})
            continue
        boots = np.mean([x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(1) for x in sel], axis=0)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        out.append({"method": m, "rule": float(np.mean([x.mean() for x in sel])), "rule_low": float(lo),
                    "rule_high": float(hi), "worst": float(min(x.mean() for x in sel)),
                    "macro": float(np.mean([v.mean() for v in by.values()]))})
    return pd.DataFrame(out)


def pick_winner(lb: pd.DataFrame, select: list[str], baseline: str = "mean",
                exclude: tuple[str, ...] = ("mean:shipped", "embed:bf16"), among: list[str] | None = None) -> str:
    """The rule on a leaderboard with `rule`, `scs[src]` and `gain[src]` columns. Only the selection
    sources' columns are read: a non-Gemma fold can never change the choice. Excluded: the shipped
    reference and runtime variants of a method (embed:bf16 decides the feature precision, not the method)."""
    lb = lb[~lb.method.isin(exclude) & ~lb.method.str.startswith("ref:")]
    if among is not None:  # e.g. what --ship can write
        lb = lb[lb.method.isin(among)]
    select = [s for s in select if f"scs[{s}]" in lb.columns]
    if not select:
        raise ValueError("selection rule: none of the selection folds was scored")
    # a method not scored on every selection fold (an LLM whose adapter trained on one) cannot be chosen:
    # its macro would be over other folds than the rest's
    lb = lb[lb[[f"scs[{s}]" for s in select]].notna().all(axis=1)]
    gains = [f"gain[{s}]" for s in select if f"gain[{s}]" in lb.columns]
    ok = lb[(lb[gains] >= 0).all(axis=1)] if gains else lb
    if not len(ok):
        ok = lb[lb.method == baseline]
    macro = ok[[f"scs[{s}]" for s in select]].mean(axis=1)
    return str(ok.method.iloc[int(np.argmax(macro.to_numpy()))])


def paired_by_fold(per_row: pd.DataFrame, a: str, b: str, select: list[str], seed: int = 1234) -> list[dict]:
    """b - a on each selection fold, row by row, with its bootstrap interval."""
    out = []
    for s in select:
        x = per_row[(per_row.method == a) & (per_row.source == s)].set_index("id").scs
        y = per_row[(per_row.method == b) & (per_row.source == s)].set_index("id").scs
        if not len(x) or not len(y):
            continue
        d = (y - x.reindex(y.index)).to_numpy()
        lo, hi = bootstrap_ci(d, seed=seed)
        out.append({"source": s, "from": a, "to": b, "gain": round(float(d.mean()), 4),
                    "ci_low": round(lo, 4), "ci_high": round(hi, 4)})
    return out


def shared_folds(per_row: pd.DataFrame, select: list[str]) -> list[str]:
    """The selection folds every method was scored on."""
    have = per_row.groupby("method").source.agg(set)
    return [s for s in select if all(s in v for v in have)]


def shared_ranking(per_row: pd.DataFrame, select: list[str], seed: int = 1234) -> pd.DataFrame | None:
    """When some method lacks a selection fold (an LLM whose adapter trained on it): every method's rule
    figures on the selection folds they all share, best first; None when all have all."""
    shared = shared_folds(per_row, select)
    if not shared or shared == list(select):
        return None
    r = rule_figures(per_row[per_row.source.isin(shared)], shared, seed=seed)
    return r.drop(columns="macro").assign(folds=",".join(shared)).sort_values("rule", ascending=False)
