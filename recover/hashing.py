"""Content hashes for cache keys: a cache keyed by path and size serves stale results after an edit."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache


def file_sha256(path: str | os.PathLike) -> str:
    st = os.stat(path)
    # memoised per (path, size, mtime) within a process; the key itself is the content's hash
    return _sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
