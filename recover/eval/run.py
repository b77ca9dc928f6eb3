"""`recover eval`: fit each predictor under an honest protocol, score it, print a leaderboard."""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..projection import tune_projection
from ..csvio import read_table
from ..data.pairs_io import has_texts, load_pairs
from ..data.protocols import PROTOCOLS, check_disjoint, folds_for, normalise_prompt
from ..meanprompt.prompt import MeanPrompt
from ..predict.base import MeanPredictor
from ..predict.ensemble import EnsembleSpec
from ..runs import new_run_dir, record_run
from ..score.embedder import Embedder
from ..score.metric import cosine_rows, scs_rows
from .cache import EmbeddingCache
from .ensemble import ENS_METHODS, member_methods
from .leaderboard import format_leaderboard, format_steps, leaderboard, paired_steps, write_report
from .llm_methods import INVERT_METHODS, LLM_METHODS, FoldMethods
from .methods import FitSettings, Rows, fit_embed, fit_mean, shipped_mean
from .select import paired_by_fold, rule_name, selection_sources, shared_ranking
from .ship import ship, ship_ensemble, ship_preset

METHODS = ("mean", "mean:shipped", "embed", "embed:bf16") + tuple(dict.fromkeys(INVERT_METHODS + LLM_METHODS))
# each method against the one it adds to (paired on the selection folds): what the step itself is worth
BUILDS_ON = {"llm+mean": "llm", "llm+suffix": "llm+mean", "llm+gate": "llm", "embed-invert": "embed",
             "llm+invert": "llm+mean"}
# embed:bf16 is embed's own fit fed held-out features encoded in bf16 (what `recover predict` does on a CPU
# with bf16 hardware): a runtime variant that decides the feature precision, never a winner itself.
VARIANTS = {"embed:bf16": "embed"}
BASELINE = "mean"


@dataclass
class EvalConfig:
    data: list[str]
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    protocol: str = "loso"
    k: int = 5
    holdout: list[str] = field(default_factory=list)  # LOSO: only these sources (default: each in turn)
    settings: FitSettings = field(default_factory=FitSettings)
    embedder: str | None = None
    cache_dir: str = "build/cache"
    report: str | None = None
    runs_dir: str = "build/runs"
    speed_rows: int = 64
    preds: dict[str, str] = field(default_factory=dict)  # NAME -> submission CSV for the held-out rows (LOSO, one holdout)
    ship: bool = False  # refit the winner on all rows and write the package's default artifacts
    ship_to: str | None = None  # ... into this folder instead (kernels/tune: against the real sentence-t5)
    command: str = ""  # recorded in the shipped manifests
    select_on: list[str] = field(default_factory=list)  # the folds that choose (default: gemma*; select.py)
    references: dict[str, str] = field(default_factory=dict)  # NAME -> mean_prompt JSON scored on every fold
    lora: str = C.LOSO_LORA  # the adapter the llm* methods serve (shipped name or LoRA GGUF with its manifest)
    val_rows: int | None = None  # score a seeded sample of each fold's held-out rows (every method the same rows)
    ensemble: str | None = None  # candidate members (an ensemble manifest): methods m:NAME, ens, ens:mbr, ens:invert
    ship_ensemble: str | None = None  # write the join chosen here as recover/assets/ensembles/NAME
    torch_dtype: str | None = None  # the LLM members' torch precision; None: this machine's measured choice
    ship_preset: str | None = None  # with ship_ensemble: that ensemble becomes this context's preset (presets.json)

    def __post_init__(self):
        if not self.data:
            raise ValueError("--data: give at least one labelled pairs CSV")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"--protocol {self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if self.ship_to:
            self.ship = True
        if self.ship and (self.protocol != "loso" or BASELINE not in self.methods):
            raise ValueError("--ship: the default is chosen under leave-one-source-out against the mean prompt; "
                             "use --protocol loso with 'mean' in --methods")
        if self.holdout and self.protocol != "loso":
            raise ValueError("--holdout names a source to leave out: it needs --protocol loso")
        if self.preds and (self.protocol != "loso" or len(self.holdout) != 1):
            raise ValueError("--pred: predictions made outside eval are scored on ONE held-out source; "
                             "use --protocol loso with one --holdout")
        clash = sorted(set(self.preds) & set(METHODS))
        if clash:
            raise ValueError(f"--pred {clash[0]}=...: that name is a built-in method; pick another")
        if set(self.references) & set(self.preds):
            raise ValueError("--reference and --pred share a name")
        if set(self.methods) & set(LLM_METHODS) and self.protocol != "loso":
            raise ValueError("--methods llm*: an adapter is held out from whole sources; use --protocol loso")
        if self.torch_dtype not in (None, *C.TORCH_DTYPES):
            raise ValueError(f"--torch-dtype {self.torch_dtype!r}: one of {', '.join(C.TORCH_DTYPES)}")
        if self.val_rows is not None and self.val_rows < 1:
            raise ValueError("--val-rows must be >= 1")
        allowed = list(METHODS)
        if self.ensemble:  # "members" stands for every m:NAME of the candidates
            members = member_methods(EnsembleSpec.load(self.ensemble))
            self.methods = list(dict.fromkeys(x for m in self.methods for x in (members if m == "members" else [m])))
            allowed += members + list(ENS_METHODS)
        bad = [m for m in self.methods if m not in allowed]
        if bad or not self.methods:
            hint = " (m:NAME and ens* need --ensemble CANDIDATES)" if any(b.startswith(("m:", "ens")) for b in bad) else ""
            raise ValueError(f"--methods: unknown {', '.join(bad) or '(none)'}{hint}; choose from {', '.join(allowed)}")
        if self.ensemble and self.protocol != "loso":
            raise ValueError("--ensemble: its LLM members are held out from whole sources; use --protocol loso")
        if self.ship_preset and not self.ship_ensemble:
            raise ValueError("--ship-preset: names the context whose default --ship-ensemble NAME becomes; give both")
        if self.ship_ensemble and not (self.ensemble and set(ENS_METHODS) & set(self.methods)):
            raise ValueError(f"--ship-ensemble: needs --ensemble CANDIDATES and a join in --methods ({', '.join(ENS_METHODS)})")


def embed_rows(df: pd.DataFrame, cache: EmbeddingCache) -> Rows:
    n = len(df)
    e = cache.encode(list(df[C.COL_ORIGINAL]) + list(df[C.COL_REWRITTEN]) + list(df[C.COL_PROMPT]), progress=True)
    return Rows(df.reset_index(drop=True), e[:n], e[n:2 * n], e[2 * n:], has_texts(df))


def fit_method(name: str, train: Rows, cfg: EvalConfig, emb, cache, exclude: set[str], log=print):
    """(runtime predictor, the mean prompt it falls back to)."""
    if name == "mean:shipped":
        m = shipped_mean()
        return MeanPredictor(m), m
    mean = fit_mean(train, cfg.settings, emb, cache, exclude, store=Path(cfg.cache_dir) / "meanprompt", log=log)
    if name == "mean":
        return MeanPredictor(mean), mean
    return fit_embed(train, cfg.settings, mean, cache, emb, log=log, exclude=exclude), mean


def predict_rows(pred, mean: MeanPrompt, rows: Rows, features: tuple | None = None) -> list[str]:
    """Rows with an empty text get the mean prompt, exactly as `recover predict` does. `features`:
    (e_orig, e_rew) of these rows from another encoding (bf16) instead of the cached fp32 ones."""
    out = [mean.prompt] * len(rows.df)
    live = np.flatnonzero(rows.live)
    eo, er = features or (rows.eo, rows.er)
    if len(live) and pred.name != "mean":
        for i, s in zip(live, pred.decode(pred.predict_from_embeddings(eo[live], er[live]))):
            out[i] = s
    return out


def sample_val(val, n: int | None, seed: int) -> np.ndarray:
    """A seeded sample of a fold's held-out rows (all of them when n is None or larger), in row order."""
    val = np.asarray(val)
    if n is None or len(val) <= n:
        return val
    return np.sort(np.random.default_rng(seed).choice(val, n, replace=False))


def bf16_features(df: pd.DataFrame, rows: Rows, emb, cfg: EvalConfig, log=print) -> tuple:
    """Every row's (e_orig, e_rew) encoded in bf16 by the same embedder, cached apart from fp32;
    and that bf16 embedder (the variant's speed is measured with it)."""
    e16 = Embedder(emb.spec, device=emb.device, dtype="bf16")
    c16 = EmbeddingCache(e16, cfg.cache_dir)
    n = len(df)
    e = c16.encode(list(df[C.COL_ORIGINAL]) + list(df[C.COL_REWRITTEN]), progress=True)
    c16.save()
    diff = cosine_rows(e, np.concatenate([rows.eo, rows.er]))
    log(f"bf16 features: {len(e)} texts, cos to fp32 min {diff.min():.5f}, mean {diff.mean():.6f}")
    return e[:n], e[n:], e16


def encode_report(cache: EmbeddingCache, seconds: float, log=print) -> dict:
    """What the embedder did, and (from a cold cache, as kernels/tune always starts) the tune kernel's
    PROJECTED time on a T4 with sentence-t5-base (recover/projection.py)."""
    e = cache.emb
    out = {"strings": e.strings, "tokens": e.tokens, "encode_s": round(e.seconds, 1), "device": e.device,
           "cold": cache.preloaded == 0}
    log(f"encoding: {e.strings} strings, {e.tokens} tokens in {e.seconds:.0f} s on {e.device}; "
        f"the rest of the run {seconds - e.seconds:.0f} s")
    if out["cold"]:
        out["t4_tune"] = tune_projection(e.tokens, seconds - e.seconds)
        log(f"kernels/tune on a T4 for these rows (PROJECTED: sentence-t5-base encodes {e.tokens} tokens in "
            f"{out['t4_tune']['encode_s']:.0f} s, the rest as here): ~{out['t4_tune']['total_s'] / 60:.0f} min")
    else:
        log("(warm cache: the T4 projection of kernels/tune needs a cold run, e.g. --cache-dir /tmp/cold)")
    return out


def read_predictions(path: str, ids: list[str]) -> list[str]:
    """A submission file's prompts in `ids` order; a missing id or a blank prompt is an error, not a zero."""
    df = read_table(path, (C.COL_ID, C.COL_PROMPT))
    got = dict(zip(df[C.COL_ID].astype(str), df[C.COL_PROMPT]))
    missing = [i for i in ids if i not in got]
    if missing:
        raise ValueError(f"{path}: no prediction for id {missing[0]!r} ({len(missing)} of {len(ids)} held-out rows missing)")
    blank = [i for i in ids if not isinstance(got[i], str) or not got[i].strip()]
    if blank:
        raise ValueError(f"{path}: blank prediction for id {blank[0]!r}")
    return [got[i] for i in ids]


def measure_speed(pred, rows: Rows, n: int) -> float | None:
    """Rows/s of the runtime path (texts encoded for real, no cache) on up to n live rows."""
    live = np.flatnonzero(rows.live)[:n]
    if not len(live):
        return None
    o, r = list(rows.df[C.COL_ORIGINAL].iloc[live]), list(rows.df[C.COL_REWRITTEN].iloc[live])
    t0 = time.perf_counter()
    pred.predict_batch(o, r)
    return len(live) / (time.perf_counter() - t0)


def fold_gains(per_row: pd.DataFrame, methods: list[str], refs: list[str], select: list[str], seed: int,
               log=print) -> list[dict]:
    """Each method against the mean prompt fitted on the same rows, the package's mean prompt against each
    fixed reference, and a runtime variant against its method, on every selection fold (paired rows,
    bootstrap interval)."""
    have = set(per_row.method)
    pairs = [(BASELINE, m) for m in methods if m != BASELINE and BASELINE in have]
    pairs += [(r, "mean:shipped") for r in refs if "mean:shipped" in have]
    pairs += [(VARIANTS[v], v) for v in VARIANTS if {v, VARIANTS[v]} <= have]  # what the runtime variant costs
    pairs += [(b, m) for m, b in BUILDS_ON.items() if {m, b} <= have]  # what each step on top of another adds
    out = [x for a, b in pairs for x in paired_by_fold(per_row, a, b, select, seed)]
    if out:
        log("paired gains on the selection folds (row by row, bootstrap 95% CI):")
    for x in out:
        log(f"  {x['from']:>12} -> {x['to']:<14} {x['source']:<20} {x['gain']:+.4f} [{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]")
    return out


@dataclass
class EvalRun:
    """What the steps of one `recover eval` share."""
    cfg: EvalConfig
    log: object
    emb: object
    cache: EmbeddingCache
    df: pd.DataFrame
    rows: Rows
    select: list[str]
    refs: dict
    folds: list
    extra: FoldMethods
    bf16: tuple | None = None
    per_row: list = field(default_factory=list)
    speeds: dict = field(default_factory=dict)
    fits: list = field(default_factory=list)
    t0: float = field(default_factory=time.time)


def run_eval(cfg: EvalConfig, log=print) -> dict:
    run_dir = new_run_dir(cfg.runs_dir, "eval")
    record_run(run_dir, cfg, cfg.settings.seed)
    r = setup(cfg, log)
    for fold in r.folds:
        score_fold(r, fold)
    out = summarise(r)
    if cfg.ship_ensemble:  # first: with --ship its joins compete for the default
        out["shipped_ensemble"] = ship_ensemble(out, r, cfg.ship_ensemble, cfg.command, log)
        if cfg.ship_preset:
            out["shipped_preset"] = ship_preset(cfg.ship_preset, out, cfg, cfg.command, log)
    if cfg.ship:
        out["shipped"] = ship(out, r.rows, cfg, r.emb, r.cache, cfg.command, log, to=cfg.ship_to)
    r.cache.save()
    meta = out["meta"]
    record_run(run_dir, cfg, cfg.settings.seed, {"result": {**meta, "leaderboard": out["leaderboard"].to_dict(orient="records")}})
    log(f"eval took {time.time() - r.t0:.0f} s")
    return out


def setup(cfg: EvalConfig, log=print) -> EvalRun:
    """The embedder and its cache, the pairs and their embeddings, the folds, the LLM / ensemble helper."""
    t0 = time.time()  # the run's clock starts before the rows are encoded: that encoding is part of its time
    if cfg.ship_ensemble:  # what ships is served by its final fits: refuse now, not after the members have run
        EnsembleSpec.load(cfg.ensemble).check_artifacts(every=True)
    emb = Embedder.resolve(cfg.embedder)
    log(f"{emb.spec.describe()} (device: {emb.device})")
    cache = EmbeddingCache(emb, cfg.cache_dir)
    df = load_pairs(cfg.data)
    log(f"pairs: {len(df)} rows from " + ", ".join(f"{s} ({n})" for s, n in df[C.COL_SOURCE].value_counts(sort=False).items()))
    unknown = sorted(set(cfg.settings.source_weights) - set(df[C.COL_SOURCE]))
    if unknown:
        raise ValueError(f"--source-weight {unknown[0]}=...: not a source (sources: {', '.join(df[C.COL_SOURCE].unique())})")
    select = selection_sources(df[C.COL_SOURCE], cfg.select_on)
    log(f"selection rule: {rule_name(select)}; folds that choose: {', '.join(select)}")
    refs = {f"ref:{n}": MeanPrompt.load(p) for n, p in cfg.references.items()}
    rows = embed_rows(df, cache)
    folds = folds_for(cfg.protocol, df[C.COL_SOURCE], df[C.COL_PROMPT], cfg.k, cfg.settings.seed, cfg.holdout or None)
    r = EvalRun(cfg, log, emb, cache, df, rows, select, refs, folds, FoldMethods(cfg, emb, cache, log), t0=t0)
    r.bf16 = bf16_features(df, rows, emb, cfg, log) if "embed:bf16" in cfg.methods else None
    if cfg.ensemble:
        r.extra.use_ensemble(cfg.ensemble, rows, lambda tr: fit_method("embed", tr, cfg, emb, cache, set(), log)[0],
                             scored_ids(df, cfg))
    return r


def scored_ids(df: pd.DataFrame, cfg: EvalConfig) -> dict[str, set]:
    """Per source, the ids its LOSO fold scores (the seeded --val-rows sample): an ensemble's pool reuses them."""
    out = {}
    for s in df[C.COL_SOURCE].unique():
        idx = sample_val(np.flatnonzero(df[C.COL_SOURCE].to_numpy() == s), cfg.val_rows, cfg.settings.seed)
        out[s] = set(df[C.COL_ID].astype(str).iloc[idx])
    return out


def score_fold(r: EvalRun, fold) -> None:
    """Fit every method on the fold's training rows, score it on its held-out rows; then what was made outside."""
    cfg, df, rows = r.cfg, r.df, r.rows
    check_disjoint(fold, df[C.COL_PROMPT])
    val = sample_val(fold.val, cfg.val_rows, cfg.settings.seed)
    tr, va = rows.take(fold.train), rows.take(val)
    exclude = {normalise_prompt(p) for p in rows.df[C.COL_PROMPT].iloc[fold.val]}
    r.log(f"{fold.name}: fit on {len(tr.df)} rows ({fold.purged} purged: prompt also held out), score {len(va.df)}"
          + (f" (a seeded sample of {len(fold.val)})" if len(val) < len(fold.val) else ""))
    fitted = {}
    r.extra.start_fold(fold.name)
    for name in cfg.methods:
        t1 = time.time()
        why = r.extra.skip_reason(name, va.df[C.COL_SOURCE].iloc[0])
        if why:
            r.log(f"  {name:<14} not scored: {why}")
            continue
        base = r.extra.base_fit(name) or VARIANTS.get(name, name)
        pred, mean = fitted.get(base) or fit_method(base, tr, cfg, r.emb, r.cache, exclude, r.log)
        fitted[base] = (pred, mean)
        if r.extra.handles(name):
            preds, params = r.extra.predict(name, tr, va, mean, pred, exclude)
            preds = [p if live else mean.prompt for p, live in zip(preds, va.live)]  # as predict: no text, the mean
        else:
            feats = (r.bf16[0][val], r.bf16[1][val]) if name == "embed:bf16" else None
            preds, params = predict_rows(pred, mean, va, feats), pred.manifest or {"mean_prompt": mean.prompt}
        scs = add_rows(r, fold, name, va, preds)
        # the rows a fit was given; a reference that fits nothing (mean:shipped) records none
        r.fits.append({"fold": fold.name, "method": name, "val_rows": len(va.df),
                       "train_ids": [] if name == "mean:shipped" else tr.ids,
                       "scs": round(float(scs.mean()), 5), "fit_s": round(time.time() - t1, 1), "params": params})
        if fold is r.folds[-1] and not r.extra.handles(name):
            r.speeds[name] = runtime_speed(r, name, pred, va)
        r.log(f"  {name:<14} SCS {scs.mean():.4f}  ({time.time() - t1:.0f} s)")
    # made outside this fold: a fixed reference prompt on every row, or a submission file's rows
    outside = [(n, [m.prompt] * len(va.ids), cfg.references[n[4:]]) for n, m in r.refs.items()]
    outside += [(n, read_predictions(p, va.ids), p) for n, p in cfg.preds.items()]
    for name, preds, path in outside:
        scs = add_rows(r, fold, name, va, preds)
        r.log(f"  {name:<14} SCS {scs.mean():.4f}  (predictions from {path})")


def add_rows(r: EvalRun, fold, name: str, va: Rows, preds: list[str]) -> np.ndarray:
    scs = scs_rows(r.cache.encode(preds), va.ep)
    r.per_row.append(pd.DataFrame({"fold": fold.name, "method": name, "id": va.ids, "source": va.df[C.COL_SOURCE],
                                   "pred": preds, "true": va.df[C.COL_PROMPT], "scs": scs}))
    return scs


def runtime_speed(r: EvalRun, name: str, pred, va: Rows) -> float | None:
    if pred.name == "mean":
        return None
    runtime = pred
    if name == "embed:bf16":
        runtime = copy.copy(pred)
        runtime.embedder = r.bf16[2]
    return measure_speed(runtime, va, r.cfg.speed_rows)


def summarise(r: EvalRun) -> dict:
    """Leaderboard, the rule on the shared folds, paired steps and gains, the report folder."""
    cfg, log = r.cfg, r.log
    r.cache.save()
    tune = encode_report(r.cache, time.time() - r.t0, log)
    per_row = pd.concat(r.per_row, ignore_index=True)
    lb = leaderboard(per_row, BASELINE, r.speeds, cfg.settings.seed, select=r.select)
    metric = "PROXY SCS (all-MiniLM-L6-v2, not sentence-t5-base)" if r.emb.spec.is_proxy else "SCS (sentence-t5-base)"
    title = f"recover eval: {cfg.protocol}, {len(r.df)} rows, {metric}; rule: {rule_name(r.select)}"
    log(format_leaderboard(lb, title, r.select))
    shared = shared_ranking(per_row, r.select, cfg.settings.seed)
    if shared is not None:
        log(f"not every method was scored on every selection fold; on the ones all share ({shared.folds.iloc[0]}):")
        for _, x in shared.iterrows():
            log(f"  {x['method']:<16} {x['rule']:.4f} [{x['rule_low']:.4f}, {x['rule_high']:.4f}]  worst {x['worst']:.4f}")
    steps = paired_steps(per_row, list(cfg.preds), cfg.settings.seed) if len(cfg.preds) > 1 else []
    if steps:
        log(format_steps(steps))
    by_fold = fold_gains(per_row, list(lb.method), list(r.refs), r.select, cfg.settings.seed, log)
    by_fold += ensemble_gains(per_row, r.select, cfg.settings.seed, log)
    meta = {"protocol": cfg.protocol, "metric": metric, "embedder": str(r.emb.spec.path), "is_proxy": r.emb.spec.is_proxy,
            "data": [str(p) for p in cfg.data], "folds": [{"name": f.name, "train": len(f.train), "val": len(f.val),
                                                           "purged": f.purged} for f in r.folds],
            "config": asdict(cfg), "seconds": round(time.time() - r.t0, 1), "paired_steps": steps,
            "rule": rule_name(r.select), "select": r.select, "paired_by_fold": by_fold, "encoding": tune,
            "shared_folds_ranking": None if shared is None else shared.to_dict(orient="records")}
    if cfg.report:
        write_report(Path(cfg.report), lb, per_row, {**meta, "fits": [{k: v for k, v in f.items() if k != "train_ids"}
                                                                      for f in r.fits]}, title)
        log(f"report: {cfg.report}")
    return {"leaderboard": lb, "per_row": per_row, "fits": r.fits, "meta": meta, "paired_steps": steps}


def ensemble_gains(per_row: pd.DataFrame, select: list[str], seed: int, log=print) -> list[dict]:
    """Each ensemble against its BEST member on each selection fold where both are scored (paired rows)."""
    out = []
    for ens in [m for m in per_row.method.unique() if m.startswith("ens")]:
        for src in select:
            cell = per_row[per_row.source == src]
            members = cell[cell.method.str.startswith("m:")].groupby("method").scs.mean()
            if ens not in set(cell.method) or members.empty:
                continue
            best = members.idxmax()
            out += paired_by_fold(per_row, best, ens, [src], seed)
    if out:
        log("ensembles against their best member on each selection fold (paired, bootstrap 95% CI):")
    for x in out:
        log(f"  {x['from']:>18} -> {x['to']:<12} {x['source']:<20} {x['gain']:+.4f} [{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]")
    return out
