"""Stage 4, label and filter: drop refusals, empty, truncated and copy-through rewrites; score pairs.

Each kept pair is scored with the metric's embedder ("scored for semantic similarity"): the SCS
between original and rewrite, so a Kaggler can see how far each category moves a text. Category
labels from the bank are kept. A report gives counts per filter and a PNG of the distributions.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_csv, atomic_write_json, read_table
from ..score.metric import scs_rows

REFUSAL = re.compile(r"^\s*(?:i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|i'?m unable|i am unable|as an ai\b|"
                     r"i'?m not able|i will not|i won'?t)", re.IGNORECASE)
FILTERS = ("empty", "refusal", "truncated", "copy_through")


def _words(t: str) -> set[str]:
    return set(re.findall(r"\w+", t.lower()))


def jaccard(a: str, b: str) -> float:
    wa, wb = _words(a), _words(b)
    return len(wa & wb) / max(1, len(wa | wb))


def classify(original: str, rewritten: str, truncated: bool, copy_threshold: float = 0.9) -> str:
    """'keep' or the first filter a row fails, in FILTERS order."""
    if not rewritten or not rewritten.strip():
        return "empty"
    if REFUSAL.search(rewritten):
        return "refusal"
    if truncated:
        return "truncated"
    if jaccard(original, rewritten) >= copy_threshold:
        return "copy_through"
    return "keep"


def run_label(rewrites_csv: str, out_dir: str, embedder=None, copy_threshold: float = 0.9, log=print) -> dict:
    df = read_table(rewrites_csv, (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))
    trunc = df.get("truncated", pd.Series(["False"] * len(df))).astype(str).str.lower().eq("true")
    df["filter"] = [classify(o, r, t, copy_threshold) for o, r, t in zip(df[C.COL_ORIGINAL], df[C.COL_REWRITTEN], trunc)]
    kept = df[df["filter"] == "keep"].reset_index(drop=True)
    if embedder is not None and len(kept):
        e = embedder.encode(list(kept[C.COL_ORIGINAL]) + list(kept[C.COL_REWRITTEN]))
        n = len(kept)
        kept["scs_original_rewrite"] = np.round(scs_rows(e[:n], e[n:]), 5)
    out = Path(out_dir)
    atomic_write_csv(out / "labelled.csv", kept)
    atomic_write_csv(out / "dropped.csv", df[df["filter"] != "keep"])
    counts = {f: int((df["filter"] == f).sum()) for f in FILTERS}
    report = {"rows": len(df), "kept": len(kept), "dropped": counts,
              "embedder": None if embedder is None else embedder.spec.describe()}
    if "category" in kept and "scs_original_rewrite" in kept:
        report["scs_by_category"] = kept.groupby("category")["scs_original_rewrite"].mean().round(4).to_dict()
        _plot(kept, out / "label_report.png")
    atomic_write_json(out / "label_report.json", report)
    log(f"labelled {len(df)} rows: kept {len(kept)}, dropped " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return report


def _plot(kept: pd.DataFrame, path: Path) -> None:
    import matplotlib  # matplotlib: heavy, only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for cat, g in kept.groupby("category"):
        ax.hist(g["scs_original_rewrite"], bins=20, range=(-0.2, 1), alpha=0.5, label=f"{cat} (n={len(g)})")
    ax.set(title="SCS(original, rewrite) by prompt category", xlabel="cos^3", ylabel="rows")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
