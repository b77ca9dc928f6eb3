"""What a prediction run leaves behind: its checkpoint while it runs, then the submission and the run record.

The checkpoint is append-only JSONL, so a killed run resumes without losing or redoing rows. Line 1 is a header
with a fingerprint of the run (input file, predictor, model, mean prompt). Every later line is one finished row.
A kill can tear only the last line, which is ignored on resume. The submission is written atomically once every
row is in, and only then is the checkpoint removed. The run folder holds the resolved config from the start (a
killed run leaves it) and the result at the end.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .. import constants as C
from ..csvio import ensure_trailing_newline, write_submission
from ..runs import new_run_dir, record_run
from .config import PredictConfig


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
        lines = self.path.read_text(encoding="utf-8").split("\n")
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

    @property
    def is_open(self) -> bool:
        return self._fh is not None

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

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


class RunOutput:
    """One run's files, start to end: resumed from its checkpoint, each chunk checkpointed as it finishes, then
    the submission written atomically, the checkpoint removed and the result recorded."""

    def __init__(self, cfg: PredictConfig, fingerprint: dict):
        self.cfg = cfg
        self.checkpoint = Checkpoint(cfg.output, fingerprint)
        if cfg.restart:
            self.checkpoint.path.unlink(missing_ok=True)
        self.done = self.checkpoint.load()  # finished rows by id: a resumed run does not predict them again
        self.resumed = bool(self.done)
        self.run_dir = new_run_dir(cfg.run_root or Path(cfg.output).resolve().parent / "recover_runs", "predict")
        record_run(self.run_dir, cfg, cfg.seed)

    def append(self, records: list[dict]) -> None:
        """One finished chunk's rows, in the checkpoint before they count as done. The checkpoint opens with the
        first chunk: a run that fails to load its model leaves it as it found it."""
        if not self.checkpoint.is_open:
            self.checkpoint.open(fresh=not self.resumed)
        self.checkpoint.append(records)
        self.done.update({r["id"]: r for r in records})

    def finish(self, ids: list[str], stats: dict) -> None:
        """Every row's prompt in input order, written atomically; then the checkpoint goes (the submission holds
        every row) and the result joins the run record."""
        self.checkpoint.close()
        write_submission(self.cfg.output, ids, [self.done[i][C.COL_PROMPT] for i in ids])
        self.checkpoint.path.unlink(missing_ok=True)
        record_run(self.run_dir, self.cfg, self.cfg.seed, {"result": stats})
