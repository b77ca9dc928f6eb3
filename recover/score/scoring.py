"""`recover score`: SCS of a submission against the true prompts, with an optional report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..csvio import InputError, atomic_write_csv, atomic_write_json, clean_text, read_table
from .embedder import Embedder
from .metric import scs_rows


@dataclass
class ScoreResult:
    score: float
    rows: int
    embedder: str
    is_proxy: bool
    per_row: pd.DataFrame

    def summary(self) -> dict:
        s = self.per_row["scs"]
        return {"score": round(self.score, 6), "rows": self.rows, "embedder": self.embedder,
                "metric": "PROXY SCS (all-MiniLM-L6-v2, not sentence-t5-base)" if self.is_proxy else "SCS (sentence-t5-base)",
                "is_proxy": self.is_proxy, "min": round(float(s.min()), 6), "median": round(float(s.median()), 6),
                "max": round(float(s.max()), 6)}


def align(pred: pd.DataFrame, truth: pd.DataFrame, pred_name="pred", truth_name="truth") -> pd.DataFrame:
    """Join on id; every truth id must have exactly one prediction and no prediction may be extra."""
    missing = [i for i in truth[C.COL_ID] if i not in set(pred[C.COL_ID])]
    if missing:
        raise InputError(f"{pred_name}: no prediction for id {missing[0]!r} ({len(missing)} ids missing)")
    extra = [i for i in pred[C.COL_ID] if i not in set(truth[C.COL_ID])]
    if extra:
        raise InputError(f"{pred_name}: id {extra[0]!r} is not in {truth_name} ({len(extra)} extra ids)")
    m = truth[[C.COL_ID, C.COL_PROMPT]].merge(pred[[C.COL_ID, C.COL_PROMPT]], on=C.COL_ID, suffixes=("_true", "_pred"))
    return m.rename(columns={f"{C.COL_PROMPT}_true": "true", f"{C.COL_PROMPT}_pred": "pred"})


# Strings pandas reads as NaN by default: the scorer would see a missing prediction.
PANDAS_NA = ("#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
             "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def check_predictions(pred: pd.DataFrame, name: str) -> None:
    """The competition rejects a file with a blank prompt; so does scoring (it would score ~0.13)."""
    blank = pred[C.COL_PROMPT].map(clean_text).str.strip().isin(("",) + PANDAS_NA)
    if blank.any():
        i = int(blank.values.argmax())
        raise InputError(f"{name}: row {i + 1}: blank {C.COL_PROMPT} for id {pred[C.COL_ID].iloc[i]!r} "
                         f"({int(blank.sum())} blank); the competition rejects such a file")


def score_texts(preds: list[str], truths: list[str], embedder: Embedder) -> np.ndarray:
    emb = embedder.encode([clean_text(t) for t in preds] + [clean_text(t) for t in truths])
    return scs_rows(emb[: len(preds)], emb[len(preds):])


def run_score(pred_path, truth_path, embedder: Embedder, report: str | None = None, log=print) -> ScoreResult:
    log(embedder.spec.describe())
    pred = read_table(pred_path, C.SUBMISSION_COLUMNS)
    check_predictions(pred, str(pred_path))
    truth = read_table(truth_path, (C.COL_ID, C.COL_PROMPT))
    m = align(pred, truth, str(pred_path), str(truth_path))
    m["scs"] = score_texts(list(m["pred"]), list(m["true"]), embedder)
    res = ScoreResult(float(m["scs"].mean()), len(m), str(embedder.spec.path), embedder.spec.is_proxy, m)
    if report:
        write_report(res, Path(report))
        log(f"report: {report}")
    return res


def write_report(res: ScoreResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "per_row.csv", res.per_row)
    atomic_write_json(out / "summary.json", res.summary())
    import matplotlib  # matplotlib: heavy, only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(res.per_row["scs"], bins=30, range=(-0.2, 1.0), color="#4477aa")
    ax.axvline(res.score, color="#cc3311", label=f"mean {res.score:.4f}")
    tag = "PROXY embedder" if res.is_proxy else "sentence-t5-base"
    ax.set(title=f"per-row SCS ({tag}), n={res.rows}", xlabel="cos^3", ylabel="rows")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scs_hist.png", dpi=110)
    plt.close(fig)


def format_table(rows: list[tuple[str, float]], title: str) -> str:
    w = max(len(r[0]) for r in rows)
    lines = [title, "-" * (w + 12)] + [f"{name:<{w}}  {score:8.4f}" for name, score in rows]
    return "\n".join(lines)

