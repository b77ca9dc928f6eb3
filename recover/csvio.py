"""Reading competition CSVs strictly, writing results atomically.

Bad input is one clear error line naming the file and the row or field; nothing is dropped
silently. Empty or NaN texts are *not* errors: such rows get the fallback prompt downstream.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import constants as C


class InputError(ValueError):
    """One-line, user-facing problem with an input file."""


def read_table(path: str | os.PathLike, required: Sequence[str], *, id_col: str = C.COL_ID) -> pd.DataFrame:
    """Read a CSV with every cell as a string; check columns, ids and encoding."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path}: file is empty (expected a header with {', '.join(required)})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: bytes are not valid UTF-8 ({e.reason} at byte {e.start})") from None
    # StringIO with newline='' lets csv keep quoted newlines inside a field.
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}")
    for n, r in enumerate(body, start=2):
        if len(r) != len(header) and any(cell.strip() for cell in r):
            raise InputError(f"{path}: row {n - 1}: has {len(r)} fields, header has {len(header)}")
    body = [r for r in body if len(r) == len(header)]
    df = pd.DataFrame(body, columns=header, dtype=object)
    ids = df[id_col].astype(str).str.strip()
    blank = ids.eq("")
    if blank.any():
        raise InputError(f"{path}: row {int(blank.values.argmax()) + 1}: empty {id_col}")
    dup = ids.duplicated()
    if dup.any():
        i = int(dup.values.argmax())
        raise InputError(f"{path}: row {i + 1}: duplicate {id_col} {ids.iloc[i]!r}")
    df[id_col] = ids
    return df.reset_index(drop=True)


def read_test(path: str | os.PathLike) -> pd.DataFrame:
    """The test rows, each text cleaned once here (clean_text: a blank one is ''), as the models are served them."""
    df = read_table(path, C.TEST_COLUMNS)
    for col in (C.COL_ORIGINAL, C.COL_REWRITTEN):
        df[col] = df[col].map(clean_text)
    return df


def clean_text(value) -> str:
    """NaN/None/blank -> ''; anything else as a stripped string."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    s = str(value)
    return s if s.strip() else ""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written artifact is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _strict_json(obj):
    """NaN and infinities -> null: json.dumps would write `NaN`, which strict JSON readers refuse."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    text = json.dumps(_strict_json(obj), indent=2, ensure_ascii=False, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def atomic_write_csv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n"))


def write_submission(path: str | os.PathLike, ids: Sequence[str], prompts: Sequence[str]) -> None:
    if len(ids) != len(prompts):
        raise ValueError(f"{len(ids)} ids but {len(prompts)} prompts")
    bad = [i for i, p in zip(ids, prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"blank prompt for id {bad[0]!r}: refusing to write an invalid submission")
    atomic_write_csv(path, pd.DataFrame({C.COL_ID: list(ids), C.COL_PROMPT: list(prompts)}))


def ensure_trailing_newline(path: str | os.PathLike) -> None:
    """Append-only JSONL after a kill: end the torn last line so the next record starts clean."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.write(b"\n")
