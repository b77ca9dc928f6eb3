"""`recover train embed`: fit the embedding-space predictor and pick its decoding on validation."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..csvio import clean_text, read_table
from ..data.prompt_bank import generate_bank, load_prompt_file
from ..data.splits import split_frame
from ..predict.base import MeanPrompt, combine
from ..predict.embed import EmbedPredictor, features, fit_ridge
from ..runs import new_run_dir, record_run
from ..score.embedder import Embedder
from ..score.metric import scs_rows

ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0)
COMBINES = ("pred", "pred+mean", "mean+pred")


@dataclass
class EmbedTrainConfig:
    data: list[str]
    out: str
    bank_size: int = 4000
    bank_files: list[str] = field(default_factory=list)
    bank_include_train: bool = False  # train prompts in the bank: better fit, but the artifact then holds them
    mean_prompt: str | None = None
    embedder: str | None = None
    cache_dir: str = "build/cache"
    runs_dir: str = "build/runs"
    seed: int = C.DEFAULT_SEED

    def __post_init__(self):
        if not self.data:
            raise ValueError("--data: give at least one pairs CSV (id, original_text, rewritten_text, rewrite_prompt)")


def cached_encode(emb: Embedder, texts: list[str], cache_dir: str | Path, tag: str) -> np.ndarray:
    """Encode once per (embedder, texts): long texts on CPU take minutes, reruns should not."""
    h = hashlib.sha256(("\x00".join([str(emb.spec.path)] + texts)).encode()).hexdigest()[:20]
    p = Path(cache_dir) / f"emb-{tag}-{h}.npy"
    if p.is_file():
        return np.load(p)
    e = emb.encode(texts, progress=len(texts) > 200)
    p.parent.mkdir(parents=True, exist_ok=True)
    np.save(p, e)
    return e


def load_pairs(paths: list[str]) -> pd.DataFrame:
    frames = [read_table(p, C.TEST_COLUMNS + (C.COL_PROMPT,)) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    dup = df[C.COL_ID].duplicated()
    if dup.any():
        raise ValueError(f"id {df[C.COL_ID][dup.values.argmax()]!r} appears in more than one --data file")
    for c in (C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT):
        df[c] = df[c].map(clean_text)
    return df


def train_embed(cfg: EmbedTrainConfig, log=print) -> dict:
    t0 = time.time()
    run_dir = new_run_dir(cfg.runs_dir, "train-embed")
    record_run(run_dir, cfg, cfg.seed)
    emb = Embedder.resolve(cfg.embedder)
    log(emb.spec.describe())
    mean = MeanPrompt.load(cfg.mean_prompt)
    df = load_pairs(cfg.data)
    tr, va = split_frame(df, C.COL_ID)
    log(f"pairs: {len(tr)} train, {len(va)} validation")

    def embed_rows(d, tag):
        e = cached_encode(emb, list(d[C.COL_ORIGINAL]) + list(d[C.COL_REWRITTEN]) + list(d[C.COL_PROMPT]), cfg.cache_dir, tag)
        n = len(d)
        # A pair with an empty text has nothing to learn from (and gets the fallback at inference).
        ok = (d[C.COL_ORIGINAL].str.strip() != "") & (d[C.COL_REWRITTEN].str.strip() != "")
        if (~ok).any():
            log(f"  {tag}: {int((~ok).sum())} of {n} rows have an empty text: not used for fitting")
        m = ok.to_numpy()
        return features(e[:n], e[n:2 * n])[m], e[2 * n:][m], d[m].reset_index(drop=True), e[2 * n:]

    Xtr, Ytr, tr, _ = embed_rows(tr, "train")
    Xva, Yva, va_live, Yva_all = embed_rows(va, "val")
    best = None
    for a in ALPHAS:
        W, xm, ym = fit_ridge(Xtr.astype(np.float64), Ytr.astype(np.float64), a)
        P = (Xva - xm) @ W + ym
        cos = float(np.mean(np.sum(P * Yva, 1) / np.linalg.norm(P, axis=1)))
        log(f"  ridge alpha={a:<5} val cos(pred, true) = {cos:.4f}")
        if best is None or cos > best[0]:
            best = (cos, a, W, xm, ym)
    _, alpha, W, xm, ym = best

    bank = [b.prompt for b in generate_bank(cfg.bank_size, cfg.seed)] if cfg.bank_size else []
    for f in cfg.bank_files:
        bank += [b.prompt for b in load_prompt_file(f)]
    if cfg.bank_include_train:
        bank += list(tr[C.COL_PROMPT])
    bank = list(dict.fromkeys(b for b in bank if b.strip()))
    log(f"bank: {len(bank)} prompts")
    proto = EmbedPredictor(W, xm, ym, bank, None, emb, {})
    pred_emb = proto.predict_embeddings(list(va_live[C.COL_ORIGINAL]), list(va_live[C.COL_REWRITTEN]))
    live = ((va[C.COL_ORIGINAL].str.strip() != "") & (va[C.COL_REWRITTEN].str.strip() != "")).to_numpy()
    e_mean = emb.encode([mean.prompt])
    mean_rows = scs_rows(np.repeat(e_mean, len(va), 0), Yva_all)
    scores = {"mean": float(np.mean(mean_rows))}
    choices = {}
    for mode in COMBINES:
        finals = [combine(b, mean.prompt, mode) for b in bank]
        B = cached_encode(emb, finals, cfg.cache_dir, f"bank-{mode.replace('+', '_')}")
        idx = np.argmax(pred_emb @ B.T, axis=1)  # decode against the embeddings of the FINAL strings
        rows = mean_rows.copy()
        rows[live] = scs_rows(B[idx], Yva)
        scores[f"embed:{mode}"] = float(np.mean(rows))
        scores[f"embed:{mode}:rows_with_texts"] = float(np.mean(rows[live]))
        choices[mode] = B
    scores["mean:rows_with_texts"] = float(np.mean(mean_rows[live]))
    best_mode = max(COMBINES, key=lambda m: scores[f"embed:{m}"])
    oracle = float(np.mean(np.max(scs_rows_matrix(choices[best_mode], Yva), axis=0)))
    manifest = {"format_version": C.MANIFEST_FORMAT_VERSION, "kind": "embed_predictor",
                "embedder": C.PROXY_MODEL_NAME if emb.spec.is_proxy else str(emb.spec.path),
                "embedder_is_proxy": emb.spec.is_proxy, "embedder_dim": emb.dim, "alpha": alpha,
                "combine": best_mode, "mean_prompt": mean.prompt, "bank_size": len(bank),
                "bank_includes_train_prompts": cfg.bank_include_train,
                "validation": {"rows": len(va), "rows_with_texts": int(live.sum()), **{k: round(v, 4) for k, v in scores.items()},
                               "bank_oracle": round(oracle, 4)},
                "train_rows": len(tr), "data": [Path(p).name for p in cfg.data], "seed": cfg.seed}
    pred = EmbedPredictor(W, xm, ym, bank, choices[best_mode], emb, manifest)
    pred.save(cfg.out)
    record_run(run_dir, cfg, cfg.seed, {"result": manifest, "seconds": round(time.time() - t0, 1)})
    tag = "PROXY SCS" if emb.spec.is_proxy else "SCS"
    log(f"validation {tag} ({len(va)} rows): " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
        + f"; chosen combine: {best_mode}; bank oracle {oracle:.4f}")
    log(f"wrote {cfg.out}")
    return manifest


def scs_rows_matrix(B: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """SCS of every bank string (rows) against every truth (columns)."""
    return (B @ Y.T) ** C.SCS_EXPONENT
