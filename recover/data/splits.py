"""Honest dev splits on disk: hold one source out (LOSO), purging prompts it shares with the rest.

`recover data split --holdout gemma_rewrites_a` writes train.csv (the other sources), val.csv,
val_test.csv (no prompt) and val_truth.csv, for scripts that train and score outside `recover eval`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .. import constants as C
from ..csvio import atomic_write_csv
from .pairs_io import load_pairs
from .protocols import check_disjoint, loso_folds, normalise_prompt

VAL_FRACTION_BUCKETS = 5  # 1 bucket of 5 -> 20%


def is_validation(prompt: str, salt: str = "recover-split-v2") -> bool:
    """A stable 20% of prompts by their NORMALISED text, so case/punctuation variants stay together."""
    h = hashlib.sha256(f"{salt}:{normalise_prompt(prompt)}".encode()).digest()
    return h[0] % VAL_FRACTION_BUCKETS == 0


def write_holdout_split(paths: list[str], out: str, holdout: str) -> dict:
    df = load_pairs(paths)
    fold = loso_folds(df[C.COL_SOURCE], df[C.COL_PROMPT], holdout=[holdout])[0]
    check_disjoint(fold, df[C.COL_PROMPT])
    tr, va = df.iloc[fold.train], df.iloc[fold.val]
    o = Path(out)
    atomic_write_csv(o / "train.csv", tr)
    atomic_write_csv(o / "val.csv", va)
    atomic_write_csv(o / "val_test.csv", va[list(C.TEST_COLUMNS)])
    atomic_write_csv(o / "val_truth.csv", va[[C.COL_ID, C.COL_PROMPT]])
    return {"holdout": holdout, "train": len(tr), "val": len(va), "purged": fold.purged, "out": str(o)}
