"""How many CPU threads this process may use: affinity mask, cgroup quota, $RECOVER_THREADS.

os.cpu_count() reports the machine, not what a container or `taskset` grants; two llama.cpp
processes that each took every core slowed each other ~15x on a 2-core machine (measured).
"""
from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cpus() -> int:
    env = os.environ.get("RECOVER_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"$RECOVER_THREADS={env!r}: a positive integer") from None
        if n < 1:
            raise ValueError(f"$RECOVER_THREADS={env!r}: a positive integer")
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota) if quota else n)


def _cgroup_quota() -> int | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        q, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if q == "max" else max(1, math.floor(int(q) / int(period)))
    except (OSError, ValueError):
        return None
