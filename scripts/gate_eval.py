"""The per-row gate (recover/eval/gate.py) held out both ways on two Gemma folds the shipped adapter never
trained on: keep the LLM answer where it agrees with the embed predictor's string (its out-of-fold
prediction from `make eval`: the fold model that never saw that source), else submit that string.
tau is fitted on one file's rows and applied to the other's. PROXY SCS; writes build/suffix/<src>.gate.csv.
    python scripts/gate_eval.py   (after scripts/suffix_eval.sh and make eval)"""
import numpy as np
import pandas as pd

from recover.csvio import write_submission
from recover.eval.cache import EmbeddingCache
from recover.eval.gate import agreement, apply_gate, fit_gate
from recover.score.embedder import Embedder
from recover.score.metric import scs_rows
from recover.score.stats import bootstrap_ci

emb = Embedder.resolve(None)
cache = EmbeddingCache(emb, "build/cache")
loso = pd.read_csv("build/eval/loso/per_row.csv", keep_default_na=False)
rows = {}
for src in ("gemma_rewrites_b", "gemma_rewrites_d"):
    llm = pd.read_csv(f"build/suffix/{src}.llm.csv", keep_default_na=False)
    oof = loso[(loso.method == "embed") & (loso.fold == f"loso:{src}")].set_index("id")
    missing = set(llm.id) - set(oof.index)
    if missing:
        raise SystemExit(f"build/eval/loso/per_row.csv lacks embed rows for {sorted(missing)[:3]}: run make eval")
    hedge, truth = list(oof.loc[llm.id, "pred"]), list(oof.loc[llm.id, "true"])
    e_llm, e_hedge, e_true = cache.encode(list(llm.rewrite_prompt)), cache.encode(hedge), cache.encode(truth)
    rows[src] = dict(ids=list(llm.id), keep=list(llm.rewrite_prompt), hedge=hedge, signal=agreement(e_llm, e_hedge),
                     scs_keep=scs_rows(e_llm, e_true), scs_hedge=scs_rows(e_hedge, e_true))
cache.save()
for fit_on, test in (("gemma_rewrites_d", "gemma_rewrites_b"), ("gemma_rewrites_b", "gemma_rewrites_d")):
    f, t = rows[fit_on], rows[test]
    g = fit_gate(f["signal"], f["scs_keep"], f["scs_hedge"])
    keep = t["signal"] >= g["tau"]
    gated = np.where(keep, t["scs_keep"], t["scs_hedge"])
    write_submission(f"build/suffix/{test}.gate.csv", t["ids"], apply_gate(t["signal"], g["tau"], t["keep"], t["hedge"]))
    print(f"gate fitted on {fit_on} (tau {g['tau']:.3f}: keeps {g['kept_share']:.0%} of its rows; there llm {g['keep_all']:.4f}, "
          f"embed {g['hedge_all']:.4f}, gate {g['score']:.4f}) -> {test}: keeps {keep.mean():.0%}")
    for name, other in (("llm", t["scs_keep"]), ("embed", t["scs_hedge"])):
        d = gated - other
        lo, hi = bootstrap_ci(d)
        print(f"  {test}: gate {gated.mean():.4f} vs {name} {other.mean():.4f}: {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")
    oracle = np.maximum(t["scs_keep"], t["scs_hedge"]).mean()
    print(f"  {test}: per-row oracle of the two {oracle:.4f}; signal vs (llm - embed) Spearman "
          f"{pd.Series(t['signal']).corr(pd.Series(t['scs_keep'] - t['scs_hedge']), method='spearman'):+.3f}")
