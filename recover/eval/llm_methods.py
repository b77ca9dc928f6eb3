"""Methods built on the LLM's held-out answers and on per-row inversion, scored under eval's folds.

    llm          the adapter's answer (blank: the fold's mean prompt), capped as `recover predict` caps
    llm+mean     the answer + the mean prompt fitted on the fold's training rows
    llm+suffix   the answer + a suffix fitted to follow the LLM's answers (meanprompt/suffix.py)
    llm+gate     the answer where the LLM's confidence >= tau, else llm+mean (eval/gate.py)
    embed-invert the embed predictor's string edited toward its predicted embedding (predict/invert.py)
    llm+invert   llm+mean edited toward the embed predictor's predicted embedding

What a method fits (suffix, tau) is fitted on the LLM's answers to TRAINING rows of the fold that the
adapter never trained on either (the "pool", a seeded sample): for fold gemma_rewrites_b with the
shipped adapter, its answers on d and e. A fold with no such rows cannot fit them; it says so.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..cpus import cpu_has_fast_bf16
from ..csvio import atomic_write_json
from ..meanprompt.optimize import vocab_from_texts
from ..meanprompt.prompt import combine
from ..meanprompt.suffix import fit_suffix
from ..predict.ensemble import EnsembleSpec
from ..predict.invert import Inverter
from ..score.embedder import Embedder, TokenCap
from ..score.metric import scs_rows
from .ensemble import FoldEnsemble
from .gate import apply_gate, fit_gate
from .llm_rows import FoldLLM

LLM_METHODS = ("llm", "llm+mean", "llm+suffix", "llm+gate", "llm+invert")
INVERT_METHODS = ("embed-invert", "llm+invert")


def by_source(rows) -> dict[str, int]:
    return {str(k): int(v) for k, v in rows.df[C.COL_SOURCE].value_counts().items()}


class FoldMethods:
    """One per eval run; `predict` is called per fold and method. `fitted(name)` fits eval's own methods."""

    def __init__(self, cfg, emb, cache, log=print):
        self.cfg, self.emb, self.cache, self.log = cfg, emb, cache, log
        self.cap = TokenCap.from_spec(emb.spec)
        self._llm = None
        self._fast = None
        self.fold_state: dict = {}

    # --- shared pieces --------------------------------------------------------------------------------------
    @property
    def llm(self):
        if self._llm is None:
            self._llm = FoldLLM(self.cfg.lora, self.cfg.cache_dir, self.cfg.settings.seed, log=self.log,
                                torch_dtype=self.cfg.torch_dtype)
        return self._llm

    @property
    def fast(self) -> Embedder:
        """Inversion's and the suffix search's candidates: one-off strings, encoded in bf16 where the CPU has it
        (eval's bf16 check: cosine to fp32 >= 0.9998), never stored in the cache."""
        if self._fast is None:
            self._fast = Embedder(self.emb.spec, device=self.emb.device,
                                  dtype="bf16" if self.emb.device == "cpu" and cpu_has_fast_bf16() else "fp32")
        return self._fast

    def use_ensemble(self, candidates: str, all_rows, fit_embed, scored_ids: dict) -> None:
        """The m:NAME / ens* methods over these candidate members (eval/ensemble.py)."""
        self.ensemble = FoldEnsemble(EnsembleSpec.load(candidates), self, all_rows, fit_embed, scored_ids, self.log)

    ensemble = None

    def handles(self, name: str) -> bool:
        """Methods built here (not a plain fitted predictor's decode)."""
        return name in LLM_METHODS or name in INVERT_METHODS or name.startswith(("m:", "ens"))

    def base_fit(self, name: str) -> str | None:
        """The fitted predictor a method here builds on: the embed fit (inversion's target, the embed member),
        else the mean prompt (the LLM's fallback); None for eval's own methods."""
        if name in INVERT_METHODS or (name.startswith(("m:", "ens")) and self.ensemble and self.ensemble.embeds):
            return "embed"
        return "mean" if self.handles(name) else None

    def skip_reason(self, name: str, source: str) -> str | None:
        if name in LLM_METHODS and not self.llm.held_out(source):
            return f"adapter {self.llm.name} trained on {source}"
        if name.startswith(("m:", "ens")):
            return self.ensemble.skip_reason(name, source)
        return None

    def answers(self, rows, mean: str) -> tuple[list[str], np.ndarray]:
        """(the LLM's capped answers, each row's confidence; -inf where it gave none) for rows of ONE held-out
        source each, in rows' order."""
        out, conf = [""] * len(rows.df), np.full(len(rows.df), -np.inf)
        for src, idx in rows.df.groupby(C.COL_SOURCE).indices.items():
            got = self.llm.rows(src, rows.df.iloc[idx])
            conf[idx] = pd.to_numeric(got["confidence"], errors="coerce").fillna(-np.inf).to_numpy()  # none: hedge
            for j, raw in zip(idx, got["raw"]):
                out[j] = self.cap(raw.strip()) if isinstance(raw, str) and raw.strip() else mean
        return out, conf

    def pool(self, tr):
        """The fold's training rows the adapter never trained on (a seeded sample), or None."""
        keep = np.flatnonzero(np.array([self.llm.held_out(s) for s in tr.df[C.COL_SOURCE]], bool) & tr.live)
        if not len(keep):
            return None
        rng = np.random.default_rng(self.cfg.settings.seed)
        n = self.cfg.settings.pool_rows
        return tr.take(np.sort(rng.choice(keep, n, replace=False)) if len(keep) > n else keep)

    # --- per fold ---------------------------------------------------------------------------------------------
    def start_fold(self, fold_name: str):
        self.fold_state = {"fold": fold_name}

    def predict(self, name: str, tr, va, mean, embed_pred, exclude: set[str]) -> tuple[list[str], dict]:
        st, m = self.fold_state, mean.prompt
        if name.startswith(("m:", "ens")):
            return self.ensemble.predict(name, tr, va, m, embed_pred, exclude, st.setdefault("ensemble", {}))
        if name in LLM_METHODS and "llm" not in st:
            st["llm"], st["conf"] = self.answers(va, m)
        if name == "llm":
            return st["llm"], {"lora": self.llm.name}
        plus_mean = [self.cap(combine(x, m, "pred+mean")) for x in st.get("llm", [])]
        if name == "llm+mean":
            return plus_mean, {"lora": self.llm.name, "mean_prompt": m}
        if name == "llm+suffix":
            s = self.suffix(tr, m)
            return [self.cap(combine(x, s["suffix"], "pred+mean")) if s["suffix"] else x for x in st["llm"]], s
        if name == "llm+gate":
            g = self.gate(tr, m)
            return apply_gate(st["conf"], g["tau"], st["llm"], plus_mean), g
        if name == "embed-invert":
            pe = embed_pred.predict_from_embeddings(va.eo, va.er)
            return self.invert(tr, embed_pred.decode(pe), pe, exclude)
        if name == "llm+invert":
            return self.invert(tr, plus_mean, embed_pred.predict_from_embeddings(va.eo, va.er), exclude)
        raise ValueError(f"unknown method {name}")

    def _pool_answers(self, tr, m: str):
        p = self.pool(tr)
        if p is None:
            raise ValueError(f"{self.fold_state['fold']}: no training row the adapter did not train on: "
                             "nothing to fit the suffix or the gate on")
        ans, conf = self.answers(p, m)
        return p, ans, conf

    def suffix(self, tr, m: str) -> dict:
        p, ans, _ = self._pool_answers(tr, m)
        cfg = self.cfg.settings.suffix
        truths = list(p.df[C.COL_PROMPT])
        key = hashlib.sha256(json.dumps([ans, truths, m, cfg.__dict__, self.cache.path.name if self.cache.path else ""],
                                        default=str).encode()).hexdigest()[:16]
        f = Path(self.cfg.cache_dir) / "suffix" / f"suffix-{key}.json"
        if f.is_file():
            return json.loads(f.read_text())
        fit = fit_suffix(self.fast, ans, truths, vocab_from_texts(truths), m, cfg, cap=self.cap,
                         log=lambda *a: None)
        out = {"suffix": fit["suffix"], "pool_rows": len(ans), "pool_by_source": by_source(p), "scores": fit["scores"],
               "seconds": fit["seconds"]}
        atomic_write_json(f, out)
        self.log(f"    suffix on {len(ans)} pool rows ({fit['seconds']:.0f} s): {fit['scores']} {fit['suffix']!r}")
        return out

    def gate(self, tr, m: str) -> dict:
        p, ans, conf = self._pool_answers(tr, m)
        keep = scs_rows(self.cache.encode(ans), p.ep)
        hedge = scs_rows(self.cache.encode([self.cap(combine(x, m, "pred+mean")) for x in ans]), p.ep)
        g = {**fit_gate(conf, keep, hedge), "pool_by_source": by_source(p)}
        self.log(f"    gate on {len(ans)} pool rows: tau {g['tau']:+.3f} keeps {g['kept_share']:.0%} "
                 f"({g['score']:.4f} vs llm {g['keep_all']:.4f}, llm+mean {g['hedge_all']:.4f})")
        return g

    def invert(self, tr, starts: list[str], predicted: np.ndarray, exclude: set[str]) -> tuple[list[str], dict]:
        s = self.cfg.settings
        vocab = self.fold_state.get("vocab")
        if vocab is None:  # the words of the fold's training prompts, as the mean prompt's search uses
            words = vocab_from_texts([p for p in tr.df[C.COL_PROMPT] if p not in exclude], max_words=s.vocab_size)
            vocab = self.fold_state["vocab"] = (words, self.cache.encode(words))
        inv = Inverter(self.fast.encode, vocab[0], vocab[1], s.invert, cap=self.cap)
        out, info = inv.rows(starts, predicted, self.cache.encode(starts))
        stops = {k: sum(d["stop"] == k for d in info) for k in ("edits", "seconds", "converged", "no edit")}
        rep = {"invert": s.invert.__dict__, "mean_edits": round(float(np.mean([d["edits"] for d in info])), 2),
               "stops": stops, "s_per_row": round(float(np.mean([d["seconds"] for d in info])), 3)}
        self.log(f"    inversion: {rep['mean_edits']} edits/row, {rep['s_per_row']} s/row, stops {stops}")
        return out, rep
