"""Append-only JSONL checkpoint so a killed prediction run resumes without losing or redoing rows.

Line 1 is a header with a fingerprint of the run (input file, predictor, model, mean prompt). Every
later line is one finished row. A kill can tear only the last line, which is ignored on resume.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import constants as C
from ..csvio import ensure_trailing_newline


class CheckpointMismatch(RuntimeError):
    pass


class Checkpoint:
    def __init__(self, output: str | os.PathLike, fingerprint: dict):
        self.path = Path(str(output) + C.CHECKPOINT_SUFFIX)
        self.fingerprint = fingerprint
        self._fh = None

    def load(self) -> dict[str, dict]:
        """Finished rows by id; {} when there is no checkpoint."""
        if not self.path.exists():
            return {}
        done: dict[str, dict] = {}
        with self.path.open(encoding="utf-8") as f:
            lines = f.read().split("\n")
        try:
            header = json.loads(lines[0])["_checkpoint"]
        except (ValueError, KeyError, IndexError):
            raise CheckpointMismatch(f"{self.path}: not a recover checkpoint; delete it or pass --restart") from None
        if header != self.fingerprint:
            changed = sorted(k for k in set(header) | set(self.fingerprint) if header.get(k) != self.fingerprint.get(k))
            raise CheckpointMismatch(
                f"{self.path}: made by a different run (changed: {', '.join(changed)}); delete it or pass --restart"
            )
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # torn final line from a kill: that row is simply redone
            done[rec["id"]] = rec
        return done

    def open(self, fresh: bool) -> None:
        if fresh or not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"_checkpoint": self.fingerprint}) + "\n")
        else:
            ensure_trailing_newline(self.path)  # a kill may have torn the last line
        self._fh = self.path.open("a", encoding="utf-8")

    def append(self, records: list[dict]) -> None:
        self._fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self, remove: bool) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None
        if remove:
            self.path.unlink(missing_ok=True)
