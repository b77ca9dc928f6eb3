"""`recover eval --ship`: refit the LOSO winner on every row and write the shipped defaults.

Writes recover/meanprompt/default.json (the mean prompt), recover/assets/embed_predictor/ (when the
winner is an embed predictor) and recover/assets/default_predictor.json (which one is the
default, and why). The figures they carry are the LOSO ones, from fits that never saw the rows
they were scored on; the artifact itself is fitted on all rows.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..projection import ensemble_projection
from ..csvio import atomic_write_json
from ..meanprompt.optimize import vocab_from_texts
from ..meanprompt.prompt import DEFAULT_MEAN_PROMPT_PATH
from ..models.shipped import ASSETS, resolve_model_path
from ..predict.defaults import DEFAULT_FILE
from ..predict.ensemble import ASSETS as ENS_ASSETS, EnsembleSpec, shipped_ensembles
from ..pypi_models import PYPI_PARAMS
from .ensemble import ENS_METHODS, fit_order
from .methods import fit_embed, fit_mean
from .select import pick_winner, rule_name, test_like

SHIPPABLE = ("mean", "embed", "embed-invert")  # what --ship writes (llm* ship as an adapter with its manifest)
# with --ship-ensemble NAME the joins of the candidates compete too: a winning join makes the ensemble the default
ENSEMBLE_SHIPPABLE = ("ens", "ens:concat", "ens:mbr", "ens:invert")


def loso_figures(lb: pd.DataFrame, method: str, select: list[str]) -> dict:
    r = lb.set_index("method").loc[method]
    out = {k[4:-1]: round(float(v), 4) for k, v in r.items() if k.startswith("scs[")}
    gains = {k[5:-1]: round(float(v), 4) for k, v in r.items() if k.startswith("gain[")}
    return {"scs": out, "gain_vs_mean": gains, "all_rows": round(float(r["scs"]), 4),
            "ci95": [round(float(r["ci_low"]), 4), round(float(r["ci_high"]), 4)],
            "rule": {"name": rule_name(select), "folds": list(select), "figure": round(float(r["rule"]), 4),
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
    shipped_ens = result.get("shipped_ensemble")  # written first by --ship-ensemble: its joins compete here
    winner = pick_winner(lb, meta["select"], among=list(SHIPPABLE) + (list(ENSEMBLE_SHIPPABLE) if shipped_ens else []))
    if winner in ENSEMBLE_SHIPPABLE and winner != shipped_ens["join_method"]:
        # both apply the same rule to the same rows; a disagreement means the leaderboards differ: stop loudly
        raise ValueError(f"--ship: the rule picked {winner} but --ship-ensemble shipped {shipped_ens['join_method']}")
    provenance = {"command": command, "protocol": meta["protocol"], "metric": meta["metric"],
                  "data": [Path(p).name for p in cfg.data], "train_rows": len(rows.df),
                  "fit_settings": {"vocab": cfg.settings.vocab, "source_weights": cfg.settings.source_weights,
                                   "targets_weight": cfg.settings.extra_weight, "probes": len(cfg.settings.probes),
                                   "select_on": meta["select"]}}
    mean = fit_mean(rows, cfg.settings, emb, cache, store=Path(cfg.cache_dir) / "meanprompt", log=log)
    atomic_write_json(mean_path, {
        "format_version": C.MANIFEST_FORMAT_VERSION, "kind": "mean_prompt", "prompt": mean.prompt,
        "embedder": meta["metric"], "embedder_path": None if emb.spec.is_proxy else str(emb.spec.path), "fit": mean.scores, "loso": loso_figures(lb, "mean", meta["select"]), **provenance})
    choice = {"format_version": C.MANIFEST_FORMAT_VERSION, "predictor": "mean", "model": None, "ensemble": None}
    needs_embed = winner in ("embed", "embed-invert") or (winner in ENSEMBLE_SHIPPABLE and shipped_ens["embed_member"])
    if needs_embed:  # an ensemble's embed member is the shipped artifact, with its inversion vocabulary
        pred = fit_embed(rows, cfg.settings, mean, cache, emb, log=log)
        if winner != "embed":  # the inversion's vocabulary: every training prompt's words, as in eval
            words = vocab_from_texts(list(rows.df[C.COL_PROMPT]), max_words=cfg.settings.vocab_size)
            pred.with_invert_vocab(words, cache.encode(words), cfg.settings.invert)
        pred.manifest.update(embedder=C.PROXY_MODEL_NAME if emb.spec.is_proxy else str(emb.spec.path),
                             embedder_is_proxy=emb.spec.is_proxy, embedder_dim=emb.dim,
                             combine="pred" if winner == "embed" else "pred+invert",
                             loso=loso_figures(lb, "embed-invert" if winner != "embed" else winner, meta["select"]),
                             seed=cfg.settings.seed, **provenance)
        if art.exists():
            shutil.rmtree(art)
        pred.save(art)
        choice.update(predictor="embed", model=C.EMBED_PREDICTOR_DIR)
        if winner in ENSEMBLE_SHIPPABLE:
            choice.update(predictor="ensemble", model=None, ensemble=shipped_ens["name"])
    elif art.exists():
        shutil.rmtree(art)  # a stale artifact must not look like the default
    # references have no held-out figures; a method missing a selection fold (an LLM) has no rule figure
    fitted = [m for m, r in zip(lb.method, lb.rule) if m != "mean:shipped" and not m.startswith("ref:") and pd.notna(r)]
    choice.update(method=winner, why=f"the selection rule ({rule_name(meta['select'])}; folds {', '.join(meta['select'])}) "
                  f"among {', '.join(fitted)} under leave-one-source-out",
                  loso={m: loso_figures(lb, m, meta["select"]) for m in fitted}, **provenance)
    atomic_write_json(choice_path, choice)
    log(f"shipped default: {winner} -> {choice_path}")
    return choice


def ship_ensemble(result: dict, run, name: str, command: str, log=print) -> dict:
    """`--ship-ensemble NAME`: of ens / ens:mbr / ens:invert, the one with the best macro over the selection
    folds where all were scored; its order refitted on every scored row of those folds (the members' held-out
    answers); members served by their final fits. Written to recover/assets/ensembles/NAME/manifest.json."""
    fe, per_row, select = run.extra.ensemble, result["per_row"], result["meta"]["select"]
    folds = [s for s in select if s in fe.oof]
    if not folds:
        raise ValueError("--ship-ensemble: no selection fold was scored with every member held out")
    cell = per_row[per_row.source.isin(folds)]
    macro = {m: float(cell[cell.method == m].groupby("source").scs.mean().mean()) for m in ENS_METHODS
             if set(cell[cell.method == m].source) == set(folds)}
    # the rule's figure: SCS on the test-like fold when it was scored (select.py), else the macro; the join is
    # the rule's pick among the joins (so --ship, reading the same leaderboard, agrees), else the best figure
    rank = {m: float(cell[(cell.method == m) & (cell.source == folds[0])].scs.mean()) for m in macro} \
        if test_like(folds) else macro
    lb_all = result["leaderboard"]
    guarded = lb_all[lb_all.method.isin(list(rank)) | (lb_all.method == "mean")]
    join = pick_winner(guarded, select, among=list(rank) + ["mean"])
    join = join if join in rank else max(rank, key=rank.get)
    truth = np.concatenate([fe.oof[s][0].ep for s in folds])
    answers = {m: [a for s in folds for a in fe.oof[s][1][m]] for m in fe.oof[folds[0]][1]}
    order, fit = fit_order(answers, truth, run.cache.encode, run.extra.cap, fe.spec.separator, fe.spec.suffix,
                           fallback=fe.oof[folds[0]][2])
    if join == "ens:mbr":  # MBR picks among every candidate member, as eval scored it: all of them are served
        order = [m.name for m in fe.spec.members]
    if join == "ens:concat":  # the candidates' own order, as eval scored it
        order = list(fe.spec.order)
    lb = result["leaderboard"].set_index("method")
    figures = {m: {k[4:-1]: round(float(v), 4) for k, v in lb.loc[m].items() if k.startswith("scs[") and pd.notna(v)}
               for m in lb.index if m.startswith(("m:", "ens"))}
    gains = [g for g in result["meta"]["paired_by_fold"] if g["to"] == join and g["from"].startswith("m:")]
    spec = EnsembleSpec(name=name, members=fe.spec.members, order=order,
                        join=join.split(":")[1] if join not in ("ens", "ens:concat") else "concat", separator=fe.spec.separator, suffix=fe.spec.suffix,
                        record={"chosen": join, "why": f"{rule_name(folds)}: best of {', '.join(rank)} "
                                f"({'on ' + folds[0] if test_like(folds) else 'macro over ' + ', '.join(folds)})",
                                "rule_figure": {m: round(v, 4) for m, v in rank.items()},
                                "macro": {m: round(v, 4) for m, v in macro.items()}, "loso_scs": figures,
                                "vs_best_member": gains, "fit": {"rows": len(truth), "folds": folds, **fit},
                                "candidates": str(run.cfg.ensemble), "metric": result["meta"]["metric"],
                                "seed": run.cfg.settings.seed, "val_rows": run.cfg.val_rows,
                                "command": command})
    out = spec.save(ENS_ASSETS / name)
    log(f"shipped ensemble {name}: {join}, order {' + '.join(order)} -> {out}")
    return {"name": name, "join": join, "order": order, "file": str(out), "join_method": join,
            "embed_member": any(m.kind == "embed" for m in fe.spec.members)}


def ensemble_t4_projection(spec: EnsembleSpec) -> dict:
    """The bench's cost model for `spec` on T4 x2, 1,400 rows, every row filling its members' context."""
    llms = [spec.member(n) for n in spec.order if spec.member(n).kind == "llm"]
    unknown = [m.model for m in llms if m.model not in PYPI_PARAMS]
    if unknown:
        raise ValueError(f"--ship-preset: no parameter count for base {unknown[0]} (pypi_models.PYPI_PARAMS)")
    members = [(m.name, PYPI_PARAMS[m.model], Path(resolve_model_path(m.model)).stat().st_size) for m in llms]
    return ensemble_projection(members, prompt_tokens=1024 - 32, gen_tokens=32)  # n_ctx 1024 less the answer


def test_like_figure(spec: EnsembleSpec) -> float | None:
    return spec.record.get("loso_scs", {}).get(spec.record.get("chosen", ""), {}).get(C.TEST_LIKE_SOURCE)


def ship_preset(preset_name: str, result: dict, cfg, command: str, log=print) -> dict:
    """`--ship-preset kaggle` (with --ship-ensemble): what that context serves by default (recover/assets/
    presets.json, read by `recover predict --preset` and `make datasets`) is the shipped ensemble with the best
    held-out SCS on the test-like fold among those scored on the SAME seeded rows (their records carry seed and
    --val-rows) whose T4 x2 projection for 1,400 rows fits the Kaggle limit: one eval's candidates (e.g. the
    CPU pair) can beat another's (the five members)."""
    same = {"seed": cfg.settings.seed, "val_rows": cfg.val_rows}
    rows = []
    for name in shipped_ensembles():
        spec = EnsembleSpec.load(name)
        on_f = test_like_figure(spec)
        if on_f is None or {k: spec.record.get(k) for k in same} != same:
            log(f"preset {preset_name}: ensemble {name} not compared (no {C.TEST_LIKE_SOURCE} figure on these rows)")
            continue
        proj = ensemble_t4_projection(spec)
        log(f"preset {preset_name}: {name} {spec.record.get('chosen')}: {on_f:.4f} on {C.TEST_LIKE_SOURCE}, "
            f"T4 x2 1,400 rows {proj['total_h']} h (PROJECTED){'' if proj['fits'] else ': over the limit'}")
        if proj["fits"]:
            rows.append((on_f, name, spec, proj))
    if not rows:
        raise ValueError(f"--ship-preset {preset_name}: no shipped ensemble has a {C.TEST_LIKE_SOURCE} figure on "
                         "these rows and fits the T4 projection")
    on_f, name, spec, proj = max(rows, key=lambda r: r[0])
    vs = [g for g in spec.record.get("vs_best_member", []) if g["source"] == C.TEST_LIKE_SOURCE]
    f = ASSETS / C.PRESETS_FILE
    presets = json.loads(f.read_text()) if f.is_file() else {"format_version": C.MANIFEST_FORMAT_VERSION}
    presets[preset_name] = {
        "ensemble": name, "model": next((m.model for m in spec.members if m.kind == "llm"), None),
        "why": f"the best held-out SCS on {C.TEST_LIKE_SOURCE} among the shipped ensembles "
               f"({', '.join(r[1] for r in rows)}): {name} = {spec.record.get('chosen')} of "
               f"{' + '.join(spec.order)}, {on_f:.4f}; T4 x2, 1,400 rows: {proj['total_h']} h (PROJECTED)",
        "figures": {"test_like": on_f, "vs_best_member": vs[0] if vs else None, "t4_projection": proj,
                    "compared": {r[1]: r[0] for r in rows}},
        "command": command}
    atomic_write_json(f, presets)
    log(f"preset {preset_name}: ensemble {name} -> {f}")
    return presets[preset_name]
