"""The two honest evaluation protocols. Every fit in the project is scored with one of them.

- grouped k-fold: rows are grouped by their normalised prompt, so no prompt string (lowercased,
  punctuation and whitespace collapsed) is on both sides of a fold;
- leave-one-source-out (LOSO): fit on every source but one, score on the one held out. Training
  rows whose normalised prompt also occurs in the held-out source are purged (and counted), so
  LOSO is also prompt-disjoint.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("loso", "kfold")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_prompt(text: str) -> str:
    """Lowercase; every run of punctuation/whitespace becomes one space."""
    return " ".join(_NON_WORD.sub(" ", str(text).lower()).split())


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray  # row positions
    val: np.ndarray
    purged: int = 0  # training rows dropped because their prompt occurs in val


def _stable(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def grouped_kfold(prompts, k: int = 5, seed: int = 1234) -> list[Fold]:
    """k prompt-disjoint folds, balanced by rows: groups (largest first) go to the emptiest fold."""
    if k < 2:
        raise ValueError("grouped k-fold needs k >= 2")
    keys = [normalise_prompt(p) for p in prompts]
    groups: dict[str, list[int]] = {}
    for i, g in enumerate(keys):
        groups.setdefault(g, []).append(i)
    if len(groups) < k:
        raise ValueError(f"grouped k-fold: {len(groups)} distinct prompts cannot fill {k} folds")
    sizes = [0] * k
    fold_of: dict[str, int] = {}
    for g in sorted(groups, key=lambda g: (-len(groups[g]), _stable(g, seed))):
        f = min(range(k), key=lambda j: (sizes[j], j))
        fold_of[g] = f
        sizes[f] += len(groups[g])
    assign = np.array([fold_of[g] for g in keys])
    idx = np.arange(len(keys))
    return [Fold(f"kfold{j + 1}of{k}", idx[assign != j], idx[assign == j]) for j in range(k)]


def loso_folds(sources, prompts, holdout: list[str] | None = None) -> list[Fold]:
    """One fold per source (or per name in `holdout`): train on the others, minus prompts in val."""
    sources = np.asarray(list(sources))
    keys = np.array([normalise_prompt(p) for p in prompts])
    names = list(dict.fromkeys(sources.tolist()))
    if len(names) < 2:
        raise ValueError(f"leave-one-source-out needs at least 2 sources, got {names}")
    unknown = sorted(set(holdout or []) - set(names))
    if unknown:
        raise ValueError(f"--holdout {', '.join(unknown)}: not a source (sources: {', '.join(names)})")
    out = []
    for s in holdout or names:
        val = np.flatnonzero(sources == s)
        seen = set(keys[val].tolist())
        other = np.flatnonzero(sources != s)
        keep = np.array([keys[i] not in seen for i in other], dtype=bool)
        out.append(Fold(f"loso:{s}", other[keep], val, purged=int((~keep).sum())))
    return out


def folds_for(protocol: str, sources, prompts, k: int = 5, seed: int = 1234,
              holdout: list[str] | None = None) -> list[Fold]:
    if protocol == "loso":
        return loso_folds(sources, prompts, holdout)
    if protocol == "kfold":
        return grouped_kfold(prompts, k, seed)
    raise ValueError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")


def check_disjoint(fold: Fold, prompts) -> None:
    """Raise if a normalised prompt is on both sides (the property every fold must hold)."""
    keys = [normalise_prompt(p) for p in prompts]
    both = {keys[i] for i in fold.train} & {keys[i] for i in fold.val}
    if both:
        raise AssertionError(f"{fold.name}: prompt {sorted(both)[0]!r} is in train and validation")
