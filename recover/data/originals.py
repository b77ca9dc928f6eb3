"""Stage 1, originals: import user files (txt/csv/jsonl/parquet) or have an LLM write them.

Normalise (NFC, whitespace), drop exact duplicates, filter by length. Each original gets a stable
id from its text, so re-imports and shards agree.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import unicodedata
from pathlib import Path

import pandas as pd

from .. import constants as C
from ..csvio import InputError, atomic_write_csv
from .generate import ChatGenerator

# The project's own grid for writer mode: genre x topic.
GENRES = ["email", "news article", "essay", "recipe", "poem", "dialogue", "product review", "diary entry",
          "short story", "blog post", "speech", "letter", "travel note", "how-to guide", "memo", "fable"]
TOPICS = ["a rainy morning commute", "a new bakery in town", "learning to swim as an adult", "a lost dog found",
          "the first day at a new job", "a community garden", "a power outage", "a school science fair",
          "a mountain hike", "saving money on groceries", "a late train", "a chess tournament", "moving house",
          "a surprise birthday party", "repairing an old bicycle", "a museum visit", "a thunderstorm at sea",
          "a volunteer beach cleanup", "a failed cooking experiment", "a neighbour's noisy renovation"]


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFC", str(text)).replace("\r\n", "\n").replace("\r", "\n")
    t = re.sub(r"[ \t]+", " ", t)
    t = re.sub(r"\n{3,}", "\n\n", t)
    return t.strip()


def text_id(text: str, prefix: str = "o") -> str:
    return prefix + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _read_any(path: Path) -> list[str]:
    suf = path.suffix.lower()
    if suf == ".txt":  # paragraphs separated by blank lines
        return [p for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if p.strip()]
    if suf == ".jsonl":
        out = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise InputError(f"{path}: line {n}: not valid JSON") from None
                out.append(rec.get(C.COL_ORIGINAL) or rec.get("text") or "")
        return out
    if suf in (".csv", ".parquet"):
        df = pd.read_csv(path, dtype=str, keep_default_na=False) if suf == ".csv" else pd.read_parquet(path)
        col = C.COL_ORIGINAL if C.COL_ORIGINAL in df.columns else "text" if "text" in df.columns else None
        if col is None:
            raise InputError(f"{path}: needs a column '{C.COL_ORIGINAL}' or 'text'")
        return [str(x) for x in df[col]]
    raise InputError(f"{path}: unsupported file type {suf} (txt, csv, jsonl, parquet)")


def import_originals(paths: list[str], out: str, min_chars: int = 40, max_chars: int = 4000) -> dict:
    rows, counts = {}, {"read": 0, "too_short": 0, "too_long": 0, "duplicate": 0}
    for p in paths:
        for raw in _read_any(Path(p)):
            counts["read"] += 1
            t = normalize(raw)
            if len(t) < min_chars:
                counts["too_short"] += 1
            elif len(t) > max_chars:
                counts["too_long"] += 1
            elif text_id(t) in rows:
                counts["duplicate"] += 1
            else:
                rows[text_id(t)] = {C.COL_ID: text_id(t), C.COL_ORIGINAL: t, "source": Path(p).name}
    atomic_write_csv(out, pd.DataFrame(list(rows.values()), columns=[C.COL_ID, C.COL_ORIGINAL, "source"]))
    counts["kept"] = len(rows)
    return counts


def write_originals(model: str, out: str, n: int, seed: int = C.DEFAULT_SEED, max_new_tokens: int = 160,
                    llm: dict | None = None) -> dict:
    """Writer mode: the LLM writes `n` originals from the genre x topic grid."""
    rng = random.Random(seed)
    grid = [(g, t) for g in GENRES for t in TOPICS]
    rng.shuffle(grid)
    gen = ChatGenerator(model, seed=seed, **(llm or {}))
    rows = []
    for k, (genre, topic) in enumerate(grid[:n]):
        text = normalize(gen.chat(f"Write a short {genre} about {topic}. About 80 words.", max_new_tokens, seed + k)[0])
        if text:
            rows.append({C.COL_ID: text_id(text), C.COL_ORIGINAL: text, "source": f"llm:{Path(model).name}",
                         "genre": genre, "topic": topic})
    atomic_write_csv(out, pd.DataFrame(rows))
    return {"written": len(rows)}
