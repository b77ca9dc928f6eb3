"""Embeddings cached by content: one store per embedder, one row per distinct text (sha256).

Encoding a few thousand long texts on 2 CPU cores takes minutes; a rerun of `recover eval` only
encodes texts it has not seen, so reruns take seconds. The embedder is identified by the content
of its folder's small files and the sizes of its weights, not by its path.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ..csvio import atomic_write_bytes

_SMALL = 1 << 20
# Rewriting the whole store (tens of MB) after every few prediction strings would dominate a rerun;
# small additions wait for save(), which `recover eval` calls at the end.
SAVE_AT = 256  # files under 1 MiB are hashed whole; larger ones (weights) by name and size


def embedder_fingerprint(path: str | Path) -> str:
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        size = f.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size < _SMALL:
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class EmbeddingCache:
    """`encode(texts)` returns the embedder's L2-normalised rows, encoding only unseen texts."""

    def __init__(self, embedder, cache_dir: str | Path | None = "build/cache"):
        self.emb = embedder
        kind = "" if getattr(embedder, "dtype", "fp32") == "fp32" else f"-{embedder.dtype}"  # bf16 rows apart
        self.path = Path(cache_dir) / f"emb-{embedder_fingerprint(embedder.spec.path)}{kind}.npz" if cache_dir else None
        self._rows: dict[str, np.ndarray] = {}
        self._dirty = False
        if self.path and self.path.is_file():
            z = np.load(self.path)
            self._rows = dict(zip(z["keys"].tolist(), z["emb"]))
        self.encoded = 0
        self.preloaded = len(self._rows)  # 0: a cold run, every text this run needs gets encoded

    def encode(self, texts, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._rows))
        if missing:
            by_key = {k: t for k, t in zip(keys, texts)}
            e = self.emb.encode([by_key[k] for k in missing], progress=progress and len(missing) > 200)
            self._rows.update(zip(missing, e))
            self.encoded += len(missing)
            self._dirty = True
            if len(missing) >= SAVE_AT:  # minutes of encoding: keep them even if the run dies
                self.save()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._rows[k] for k in keys]).astype(np.float32)

    @property
    def dim(self) -> int:
        return self.emb.dim

    def save(self) -> None:
        if not (self.path and self._dirty):
            return

        buf = io.BytesIO()
        np.savez(buf, keys=np.array(list(self._rows)), emb=np.stack(list(self._rows.values())).astype(np.float32))
        atomic_write_bytes(self.path, buf.getvalue())
        self._dirty = False
