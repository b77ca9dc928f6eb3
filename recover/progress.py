"""Progress for long loops: a tqdm bar on a terminal, a few plain log lines otherwise.

A 1,427-row predict once wrote a 100 KB log of carriage-return updates. When stderr is not a
terminal we print one line every `every_pct` percent or `every_s` seconds, whichever comes later,
with the rate and an ETA.
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class LogProgress:
    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, every_pct: float = 10.0,
                 every_s: float = 30.0, file=None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every_pct, self.every_s, self.file = every_pct, every_s, file or sys.stderr
        self.t0 = self._last_t = time.monotonic()
        self._start_n = initial
        self._last_pct = -1e9
        self.postfix = ""

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        pct = 100.0 * self.n / self.total if self.total else 100.0
        done = self.total and self.n >= self.total
        if done or (pct - self._last_pct >= self.every_pct and now - self._last_t >= self.every_s):
            self._emit(now)

    def _emit(self, now: float) -> None:
        rate = (self.n - self._start_n) / max(now - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 and self.total else 0.0
        pct = 100.0 * self.n / self.total if self.total else 100.0
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%), {rate:.2f} {self.unit}/s, "
              f"ETA {eta / 60:.1f} min{self.postfix}", file=self.file, flush=True)
        self._last_t, self._last_pct = now, pct

    def set_postfix(self, **kw) -> None:
        self.postfix = "".join(f", {k}={v}" for k, v in kw.items())

    def close(self) -> None:
        pass


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, file=None):
    """tqdm on a terminal, LogProgress otherwise; both take update / set_postfix / close."""
    if is_terminal(file):
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=file or sys.stderr, dynamic_ncols=True)
    return LogProgress(total, desc, unit, initial, file=file)
