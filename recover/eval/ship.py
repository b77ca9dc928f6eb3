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


def ship_ensemble(result: dict, run, name: str, command: str, log=print) -> dict:
    """`--ship-ensemble NAME`: of ens / ens:mbr / ens:invert, the one with the best macro over the selection
    folds where all were scored; its order refitted on every scored row of those folds (the members' held-out
    answers); members served by their final fits. Written to recover/assets/ensembles/NAME/manifest.json."""
    import numpy as np

    from ..predict.ensemble import ASSETS as ENS_ASSETS, EnsembleSpec
    from .ensemble import ENS_METHODS, fit_order

    fe, per_row, select = run.extra.ensemble, result["per_row"], result["meta"]["select"]
    folds = [s for s in select if s in fe.oof]
    if not folds:
        raise ValueError("--ship-ensemble: no selection fold was scored with every member held out")
    cell = per_row[per_row.source.isin(folds)]
    macro = {m: float(cell[cell.method == m].groupby("source").scs.mean().mean()) for m in ENS_METHODS
             if set(cell[cell.method == m].source) == set(folds)}
    join = max(macro, key=macro.get)
    truth = np.concatenate([fe.oof[s][0].ep for s in folds])
    answers = {m: [a for s in folds for a in fe.oof[s][1][m]] for m in fe.oof[folds[0]][1]}
    order, fit = fit_order(answers, truth, run.cache.encode, run.extra.cap, fe.spec.separator, fe.spec.suffix,
                           fallback=fe.oof[folds[0]][2])
    if join == "ens:mbr":  # MBR picks among every candidate member, as eval scored it: all of them are served
        order = [m.name for m in fe.spec.members]
    lb = result["leaderboard"].set_index("method")
    figures = {m: {k[4:-1]: round(float(v), 4) for k, v in lb.loc[m].items() if k.startswith("scs[") and pd.notna(v)}
               for m in lb.index if m.startswith(("m:", "ens"))}
    gains = [g for g in result["meta"]["paired_by_fold"] if g["to"] == join and g["from"].startswith("m:")]
    spec = EnsembleSpec(name=name, members=fe.spec.members, order=order, join=join.split(":")[1] if ":" in join
                        else "concat", separator=fe.spec.separator, suffix=fe.spec.suffix,
                        record={"chosen": join, "why": f"best macro over {', '.join(folds)} among {', '.join(macro)}",
                                "macro": {m: round(v, 4) for m, v in macro.items()}, "loso_scs": figures,
                                "vs_best_member": gains, "fit": {"rows": len(truth), "folds": folds, **fit},
                                "candidates": str(run.cfg.ensemble), "metric": result["meta"]["metric"],
                                "command": command})
    out = spec.save(ENS_ASSETS / name)
    log(f"shipped ensemble {name}: {join}, order {' + '.join(order)} -> {out}")
    return {"name": name, "join": join, "order": order, "file": str(out)}
