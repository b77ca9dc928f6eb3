"""`recover probes sim`: does leaderboard-probe matching help? Simulated under leave-one-source-out.

For each selection fold held out, the held-out source plays the hidden test: its prompt groups are split
into a PUBLIC half (the leaderboard the probes are read from) and a PRIVATE half (what is scored). K probe
prompts (the targets nearest K k-means centres of the TRAINING targets) are "submitted": their public
score is read. The mean prompt fitted with target weights matched to those K scores is compared with the
unmatched one on the private half, row by row (paired bootstrap). Nothing of the held-out source reaches
a fit but the K numbers.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_csv, atomic_write_json
from ..data.pairs_io import load_pairs
from ..meanprompt.probes import pick_probes
from ..score.embedder import Embedder
from ..score.metric import scs_matrix
from .cache import EmbeddingCache
from .methods import FitSettings, fit_mean, matched_weights, mean_targets
from ..data.protocols import loso_folds, normalise_prompt
from .run import embed_rows
from .select import selection_sources
from ..score.stats import bootstrap_ci


@dataclass
class ProbeSimConfig:
    data: list[str]
    ks: list[int] = field(default_factory=lambda: [20, 50])
    holdout: list[str] = field(default_factory=list)  # default: the selection folds (gemma*)
    public_share: float = 0.5
    settings: FitSettings = field(default_factory=FitSettings)
    embedder: str | None = None
    cache_dir: str = "build/cache"
    out: str = "build/probes/sim.json"

    def __post_init__(self):
        if not self.ks or min(self.ks) < 2:
            raise ValueError("--k: probe counts >= 2, e.g. 20,50")
        if not 0 < self.public_share < 1:
            raise ValueError("--public-share: between 0 and 1")
        if self.settings.probes:
            raise ValueError("--probes: the simulation reads its own probes from the held-out source; give none")


def public_mask(prompts, share: float, seed: int) -> np.ndarray:
    """Split by normalised prompt (a prompt is public or private, never both), stable by hash."""
    h = [int(hashlib.sha256(f"{seed}:{normalise_prompt(p)}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF for p in prompts]
    return np.array(h) < share


def scs_of(cache, prompt: str, ep: np.ndarray) -> np.ndarray:
    return scs_matrix(ep, cache.encode([prompt]))[:, 0]


def run_probe_sim(cfg: ProbeSimConfig, log=print) -> dict:
    t0 = time.time()
    emb = Embedder.resolve(cfg.embedder)
    log(f"{emb.spec.describe()} (device: {emb.device})")
    cache = EmbeddingCache(emb, cfg.cache_dir)
    df = load_pairs(cfg.data)
    rows = embed_rows(df, cache)
    s = cfg.settings
    holdout = cfg.holdout or selection_sources(df[C.COL_SOURCE])
    store = Path(cfg.cache_dir) / "meanprompt"
    results = []
    for fold in loso_folds(df[C.COL_SOURCE], df[C.COL_PROMPT], holdout):
        tr, va = rows.take(fold.train), rows.take(fold.val)
        exclude = {normalise_prompt(p) for p in va.df[C.COL_PROMPT]}
        pub = public_mask(va.df[C.COL_PROMPT], cfg.public_share, s.seed)
        log(f"{fold.name}: {len(tr.df)} training rows; held out {pub.sum()} public / {(~pub).sum()} private rows")
        plain = fit_mean(tr, s, emb, cache, exclude, store=store, log=log)
        base = scs_of(cache, plain.prompt, va.ep[~pub])
        targets, _ = mean_targets(tr.df, s, exclude)
        T = cache.encode(targets)
        for k in cfg.ks:
            probes = pick_probes(T, targets, k, s.seed)
            P = cache.encode(probes)
            public = scs_matrix(va.ep[pub], P).mean(0)  # what the leaderboard would show
            matched = fit_mean(tr, replace(s, probes=list(zip(probes, public.tolist()))), emb, cache, exclude,
                               store=store, log=log)
            d = scs_of(cache, matched.prompt, va.ep[~pub]) - base
            lo, hi = bootstrap_ci(d, seed=s.seed)
            r = {"holdout": fold.name.split(":", 1)[1], "k": len(probes), "private_rows": int((~pub).sum()),
                 "unmatched": round(float(base.mean()), 4), "matched": round(float(base.mean() + d.mean()), 4),
                 "gain": round(float(d.mean()), 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                 "unmatched_prompt": plain.prompt, "matched_prompt": matched.prompt}
            results.append(r)
            log(f"  K={r['k']:<3} private: unmatched {r['unmatched']:.4f} -> matched {r['matched']:.4f}  "
                f"{r['gain']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
    cache.save()
    table = format_sim(results, emb.spec.is_proxy)
    log(table)
    out = {"format_version": C.MANIFEST_FORMAT_VERSION, "results": results, "table": table,
           "config": {k: v for k, v in asdict(cfg).items() if k != "settings"},
           "settings": {"vocab": s.vocab, "extra_weight": s.extra_weight, "source_weights": s.source_weights,
                        "probe_groups": s.probe_groups}, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(cfg.out, out)
    log(f"wrote {cfg.out} ({time.time() - t0:.0f} s)")
    return out


def format_sim(results: list[dict], proxy: bool) -> str:
    tag = "PROXY SCS" if proxy else "SCS"
    lines = [f"probe matching, simulated ({tag} on the held-out source's PRIVATE half; probes read on its public half)",
             f"{'held out':<20} {'K':>3} {'unmatched':>9} {'matched':>8} {'gain [95% CI]':>26}"]
    for r in results:
        lines.append(f"{r['holdout']:<20} {r['k']:>3} {r['unmatched']:9.4f} {r['matched']:8.4f} "
                     f"{r['gain']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
    return "\n".join(lines)


def _targets(data: list[str], settings: FitSettings, embedder: str | None, cache_dir: str):
    """The local targets of the given sources (prompts only: no text is encoded) and an embedding cache."""
    cache = EmbeddingCache(Embedder.resolve(embedder), cache_dir)
    targets, w = mean_targets(load_pairs(data), settings)
    return targets, w, cache


def pick_probes_for_kaggle(data: list[str], k: int, settings: FitSettings, embedder: str | None, cache_dir: str,
                           out: str, log=print) -> list[str]:
    """`recover probes pick`: K prompts to submit as constant submissions; fill in their public scores in
    the `score` column and pass the file as --probes."""
    targets, _, cache = _targets(data, settings, embedder, cache_dir)
    probes = pick_probes(cache.encode(targets), targets, k, settings.seed)
    cache.save()
    atomic_write_csv(out, pd.DataFrame({"prompt": probes, "score": [""] * len(probes)}))
    log(f"wrote {out}: {len(probes)} probe prompts; submit each as every row's prompt, write its PUBLIC score in "
        "the score column, then: make ship-default PROBES=" + out)
    return probes


def match_to_file(data: list[str], settings: FitSettings, embedder: str | None, cache_dir: str, out: str,
                  log=print) -> pd.DataFrame:
    """`recover probes match`: the local targets with their weights before and after matching the probes
    (the weights `recover eval --probes` fits the mean prompt with)."""
    if not settings.probes:
        raise ValueError("--probes: a CSV of probe prompts with their leaderboard scores")
    targets, w, cache = _targets(data, settings, embedder, cache_dir)
    m = matched_weights(targets, w, settings, cache, log)
    cache.save()
    table = pd.DataFrame({"target": targets, "weight": w / w.sum(), "matched_weight": m / m.sum()})
    atomic_write_csv(out, table)
    log(f"wrote {out}: {len(table)} targets")
    return table
