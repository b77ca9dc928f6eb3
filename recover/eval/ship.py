"""`recover eval --ship`: refit the LOSO winner on every row and write the shipped defaults.

Writes recover/meanprompt/default.json (the mean prompt), recover/assets/embed_predictor/ (when the
winner is an embed predictor) and recover/assets/default_predictor.json (which one is the
default, and why). The figures they carry are the LOSO ones, from fits that never saw the rows
they were scored on; the artifact itself is fitted on all rows.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_json
from ..predict.base import DEFAULT_MEAN_PROMPT_PATH
from ..predict.defaults import ASSETS, DEFAULT_FILE
from ..meanprompt.optimize import vocab_from_texts
from .methods import fit_embed, fit_mean
from .select import RULE, pick_winner

SHIPPABLE = ("mean", "embed", "embed-invert")  # what --ship writes (llm* ship as an adapter with its manifest)


def loso_figures(lb: pd.DataFrame, method: str, select: list[str]) -> dict:
    r = lb.set_index("method").loc[method]
    out = {k[4:-1]: round(float(v), 4) for k, v in r.items() if k.startswith("scs[")}
    gains = {k[5:-1]: round(float(v), 4) for k, v in r.items() if k.startswith("gain[")}
    return {"scs": out, "gain_vs_mean": gains, "all_rows": round(float(r["scs"]), 4),
            "ci95": [round(float(r["ci_low"]), 4), round(float(r["ci_high"]), 4)],
            "rule": {"name": RULE, "folds": list(select), "macro": round(float(r["rule"]), 4),
                     "ci95": [round(float(r["rule_low"]), 4), round(float(r["rule_high"]), 4)],
                     "worst": round(float(r["worst"]), 4)},
            "macro_all_folds": round(float(r["macro"]), 4)}


def ship(result: dict, rows, cfg, emb, cache, command: str, log=print, to: str | None = None) -> dict:
    """to=None: the package defaults. to=DIR (kernels/tune on Kaggle, against the real sentence-t5):
    DIR/mean_prompt.json, DIR/embed_predictor/, DIR/default_predictor.json - what the submission
    notebook picks up from an attached kernel output."""
    mean_path, art, choice_path = (DEFAULT_MEAN_PROMPT_PATH, ASSETS / C.EMBED_PREDICTOR_DIR, DEFAULT_FILE) if to is None \
        else (Path(to) / "mean_prompt.json", Path(to) / C.EMBED_PREDICTOR_DIR, Path(to) / C.DEFAULT_PREDICTOR_FILE)
    lb = result["leaderboard"]
    meta = result["meta"]
    winner = pick_winner(lb, meta["select"], among=list(SHIPPABLE))
    provenance = {"command": command, "protocol": meta["protocol"], "metric": meta["metric"],
                  "data": [Path(p).name for p in cfg.data], "train_rows": len(rows.df),
                  "fit_settings": {"vocab": cfg.settings.vocab, "source_weights": cfg.settings.source_weights,
                                   "targets_weight": cfg.settings.extra_weight, "probes": len(cfg.settings.probes),
                                   "select_on": meta["select"]}}
    mean = fit_mean(rows, cfg.settings, emb, cache, store=Path(cfg.cache_dir) / "meanprompt", log=log)
    atomic_write_json(mean_path, {
        "format_version": C.MANIFEST_FORMAT_VERSION, "kind": "mean_prompt", "prompt": mean.prompt,
        "embedder": meta["metric"], "embedder_path": None if emb.spec.is_proxy else str(emb.spec.path), "fit": mean.scores, "loso": loso_figures(lb, "mean", meta["select"]), **provenance})
    choice = {"format_version": C.MANIFEST_FORMAT_VERSION, "predictor": "mean", "model": None}
    if winner in ("embed", "embed-invert"):
        pred = fit_embed(rows, cfg.settings, mean, cache, emb, log=log)
        if winner == "embed-invert":  # the inversion's vocabulary: every training prompt's words, as in eval
            words = vocab_from_texts(list(rows.df[C.COL_PROMPT]), max_words=cfg.settings.vocab_size)
            pred.with_invert_vocab(words, cache.encode(words), cfg.settings.invert)
        pred.manifest.update(embedder=C.PROXY_MODEL_NAME if emb.spec.is_proxy else str(emb.spec.path),
                             embedder_is_proxy=emb.spec.is_proxy, embedder_dim=emb.dim,
                             combine="pred+invert" if winner == "embed-invert" else "pred",
                             loso=loso_figures(lb, winner, meta["select"]), seed=cfg.settings.seed, **provenance)
        if art.exists():
            shutil.rmtree(art)
        pred.save(art)
        choice.update(predictor="embed", model=C.EMBED_PREDICTOR_DIR)
    elif art.exists():
        shutil.rmtree(art)  # a stale artifact must not look like the default
    # references have no held-out figures; a method missing a selection fold (an LLM) has no rule figure
    fitted = [m for m, r in zip(lb.method, lb.rule) if m != "mean:shipped" and not m.startswith("ref:") and pd.notna(r)]
    choice.update(method=winner, why=f"the selection rule ({RULE}; folds {', '.join(meta['select'])}) "
                  f"among {', '.join(fitted)} under leave-one-source-out",
                  loso={m: loso_figures(lb, m, meta["select"]) for m in fitted}, **provenance)
    atomic_write_json(choice_path, choice)
    log(f"shipped default: {winner} -> {choice_path}")
    return choice
