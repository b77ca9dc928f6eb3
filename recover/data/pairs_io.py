"""Labelled pairs (id, original_text, rewritten_text, rewrite_prompt) from one or more CSVs.

Each row keeps the file it came from in a `source` column (the file stem): the evaluation holds
whole sources out, because a model that fits one source's prompt style can lose on another's.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import constants as C
from ..csvio import InputError, clean_text, read_table


def source_name(path: str | Path) -> str:
    return Path(path).stem


def load_pairs(paths: list[str], source_col: str = C.COL_SOURCE) -> pd.DataFrame:
    frames = []
    for p in paths:
        df = read_table(p, C.TEST_COLUMNS + (C.COL_PROMPT,))
        blank = df[C.COL_PROMPT].map(clean_text).str.strip() == ""
        if blank.any():
            raise InputError(f"{p}: row {int(blank.values.argmax()) + 1}: empty {C.COL_PROMPT} "
                             f"(id {df[C.COL_ID][blank.values.argmax()]!r}); a labelled pair needs its prompt")
        if source_col not in df.columns:
            df[source_col] = source_name(p)
        frames.append(df)
    if not frames:
        raise InputError("no pairs CSV given")
    df = pd.concat(frames, ignore_index=True)
    dup = df[C.COL_ID].duplicated()
    if dup.any():
        raise InputError(f"id {df[C.COL_ID][dup.values.argmax()]!r} appears in more than one pairs file")
    for c in (C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT):
        df[c] = df[c].map(clean_text)
    return df


def has_texts(df: pd.DataFrame):
    """Rows with both texts non-empty (the others get the fallback at inference: nothing to learn from)."""
    return ((df[C.COL_ORIGINAL].str.strip() != "") & (df[C.COL_REWRITTEN].str.strip() != "")).to_numpy()
