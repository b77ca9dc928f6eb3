"""How many CPU threads this process may use: affinity mask, cgroup quota, $RECOVER_THREADS.

os.cpu_count() reports the machine, not what a container or `taskset` grants; two llama.cpp
processes that each took every core slowed each other ~15x on a 2-core machine (measured).
"""
from __future__ import annotations

import fcntl
import math
import os
import sys
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


def user_cache_dir() -> Path:
    """$RECOVER_CACHE or ~/.cache/recover: requant copies, the CPU claim file."""
    return Path(os.environ.get("RECOVER_CACHE") or Path.home() / ".cache" / "recover")


_CLAIM: int | None = None  # this process's lock on the CPU claim file, held until it exits


def claim_cpus(log=None) -> bool:
    """Called by every llama.cpp engine that computes on the CPU. Two such processes on a 2-core
    machine each take every core and slow each other ~15x (measured), so the first process to
    start one takes a machine-wide lock; a second is told loudly (not blocked: a test or a notebook
    must never hang on it). With $RECOVER_THREADS set the user splits the cores: no claim.
    -> True when this process holds the claim."""
    global _CLAIM
    if _CLAIM is not None:
        return True
    if os.environ.get("RECOVER_THREADS"):
        return False

    path = user_cache_dir() / "cpu.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False  # a read-only home: no claim, no warning
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        msg = (f"WARNING: another process (pid {other}) runs llama.cpp on these {usable_cpus()} CPUs; both will "
               "run many times slower. Run one at a time, or split the cores with RECOVER_THREADS=N in each.")
        (log or (lambda m: print(m, file=sys.stderr)))(msg)
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _CLAIM = fd
    return True


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512_BF16: torch runs bf16 matmuls in hardware (2.7x fp32 measured here); without
    them bf16 is emulated and slower than fp32."""
    try:
        flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
