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


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def keep_freed_memory(large_blocks: bool = False) -> bool:
    """Keep freed memory in this process instead of handing it back to the kernel, so the next allocation of the
    same size reuses it at memset speed rather than faulting in and zeroing fresh pages (as jemalloc or tcmalloc
    would). glibc hands back any freed block over its mmap threshold (32 MiB at most) and trims the heap top.
    - the torch engine (default): blocks under 32 MiB (a layer's KV cache at 24 rows is 5.5 MB) from the heap: on
      the AMX Xeon a decode cache's `torch.zeros` took 0.39 s of a 24-row call before, 0.19 after;
    - training (large_blocks): no block is mmapped at all. A SmolLM2 SFT step at 8 rows x 384 tokens allocates
      and frees the 600 MB logits and their gradients several times; on the AMX Xeon (2 threads) half the CPU time
      of 4 steps was the kernel's (97 s of 185; 11.7 M page faults): 27.0 -> 15.5 s a step, 3.3 M faults, the same
      losses, peak RSS 13.8 -> 13.6 GB (`/usr/bin/time -v recover train sft ... --max_steps 4`). The heap is never
      trimmed: a trimmed top (tried: 2 GiB kept) was faulted in again, 20.7 s a step.
    Process-wide and for the process's life. -> whether glibc took the settings (elsewhere: as is)."""
    import ctypes  # the C library: only where glibc's allocator is tuned

    try:
        libc = ctypes.CDLL("libc.so.6")
        settings = ([(_M_TRIM_THRESHOLD, -1), (_M_MMAP_MAX, 0)] if large_blocks  # -1: SIZE_MAX, never trim
                    else [(_M_TRIM_THRESHOLD, 1 << 30), (_M_MMAP_THRESHOLD, 32 << 20)])
        return all(libc.mallopt(param, value) for param, value in settings)
    except (OSError, AttributeError):
        return False
