"""Deterministic dev/validation split: a row's side depends only on its id (or text), never on order."""
from __future__ import annotations

import hashlib

VAL_FRACTION_BUCKETS = 5  # 1 bucket of 5 -> 20% validation


def is_validation(key: str, salt: str = "recover-split-v1") -> bool:
    h = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return h[0] % VAL_FRACTION_BUCKETS == 0


def split_frame(df, key_col: str):
    """(train, val) DataFrames by the stable hash of `key_col`."""
    mask = df[key_col].astype(str).map(is_validation)
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)


def write_dev_split(paths: list[str], out: str) -> dict:
    """Pairs CSVs -> out/{train,val}.csv plus val_test.csv (no prompt) and val_truth.csv for scoring."""
    from pathlib import Path

    from .. import constants as C
    from ..csvio import atomic_write_csv
    from ..train.embed import load_pairs

    df = load_pairs(paths)
    tr, va = split_frame(df, C.COL_ID)
    o = Path(out)
    atomic_write_csv(o / "train.csv", tr)
    atomic_write_csv(o / "val.csv", va)
    atomic_write_csv(o / "val_test.csv", va[list(C.TEST_COLUMNS)])
    atomic_write_csv(o / "val_truth.csv", va[[C.COL_ID, C.COL_PROMPT]])
    return {"train": len(tr), "val": len(va), "out": str(o)}
