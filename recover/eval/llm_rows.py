"""The LLM under `recover eval`'s folds: a GGUF + adapter predicts the held-out rows of every fold it
never trained on.

An adapter's manifest records the sources its chain trained on (`training.data` less its `holdout`). A
fold whose source is among them is skipped and said so: scoring it would be a training-set figure. The
raw answers and each row's confidence (the mean log-prob of the answer's tokens) are stored per
(adapter, base, engine, source) in build/cache/llm/, row by row as chunks finish, so a killed eval
resumes and a rerun predicts nothing.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_csv
from ..data.pairs_io import source_name
from ..models.llama_engine import gguf_architecture
from ..models.llm import LlamaConfig, LlamaPredictor
from ..models.serving import cpu_engine, cpu_torch_dtype
from ..models.shipped import llm_options, lora_manifest, resolve_model_path
from ..progress import progress

COLUMNS = (C.COL_ID, "raw", "confidence")


def trained_sources(manifest: dict) -> set[str]:
    """The sources whose rows the adapter's chain trained on (its held-out file excluded)."""
    t = manifest.get("training") or {}
    if "data" not in t:
        raise ValueError("--lora: its manifest has no training.data, so no fold can be called held out for it")
    return {source_name(d) for d in t["data"]} - {t.get("holdout")}


class FoldLLM:
    """Loads the predictor once, on the first fold that needs it."""

    def __init__(self, lora: str | None, cache_dir: str | Path, seed: int = C.DEFAULT_SEED, engine: str = "auto",
                 log=print, prefix: str | None = None, torch_dtype: str | None = None, model: str | None = None):
        if lora is None:  # the bare base, zero-shot: it trained on nothing, so every fold is held out
            if not model:
                raise ValueError("a zero-shot LLM member names its base model")
            self.lora_path, self.manifest = None, {"base": model, "name": f"{model.split(':')[-1]}-zero-shot"}
            self.trained: set[str] = set()
        else:
            self.lora_path, self.manifest = lora_manifest(lora)
            self.trained = trained_sources(self.manifest)
        self.name = self.manifest.get("name", Path(self.lora_path or "").stem)
        self.model = resolve_model_path(self.manifest.get("base", C.PYPI_SMOLLM2))
        torch_ok = gguf_architecture(self.model) in (None, *C.TORCH_ENGINE_GGUF_ARCHS)
        if engine == "auto" and not torch_ok:
            engine = "llama"  # as LlamaPredictor decides it: the torch engine builds llama, gemma3 and qwen2 only
        elif engine == "auto" and torch_dtype:
            engine = "torch"  # a precision asked for names the torch engine
        self.seed, self.engine, self.log, self.prefix = seed, engine, log, prefix
        # answers are keyed by what makes them: the adapter, its base, the engine that runs here (the torch
        # engine with its precision: int8 answers differ from bf16's), the seed, the serving settings and a
        # forced prefix (a prefixed member answers differently)
        run = cpu_engine(engine)
        self.torch_dtype = (torch_dtype or cpu_torch_dtype()) if run == "torch" else None
        dtype = [self.torch_dtype] if run == "torch" else []
        key = json.dumps([self.manifest.get("sha256"), self.manifest.get("base_sha256"), Path(self.model).name,
                          run, seed, self.manifest.get("serve")] + dtype + ([prefix] if prefix else []),
                         sort_keys=True)
        self.dir = Path(cache_dir) / "llm" / f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        self._pred = None

    def held_out(self, source: str) -> bool:
        return source not in self.trained

    def predictor(self):
        if self._pred is None:
            options, _ = llm_options({"lora_path": self.lora_path, "engine": self.engine,
                                      **({"torch_dtype": self.torch_dtype} if self.torch_dtype else {}),
                                      **({"prefixes": [self.prefix]} if self.prefix else {})})
            self._pred = LlamaPredictor(LlamaConfig(model=self.model, seed=self.seed, **options))
            c = self._pred.cfg
            self.log(f"  llm {self.name}: engine {c.engine}, n_ctx {c.n_ctx}, max_new_tokens {c.max_new_tokens}")
        return self._pred

    def rows(self, source: str, df: pd.DataFrame) -> pd.DataFrame:
        """(id, raw, confidence) for every row of df, in df's order; predicts only the ids not stored yet."""
        if not self.held_out(source):
            raise ValueError(f"llm {self.name} trained on {source}: its rows are not held out")
        f = self.dir / f"{source}.csv"
        have = pd.read_csv(f, dtype={C.COL_ID: str}, keep_default_na=False) if f.is_file() else \
            pd.DataFrame(columns=list(COLUMNS))
        ids = df[C.COL_ID].astype(str)
        todo = df[~ids.isin(set(have[C.COL_ID]))]
        if len(todo):
            p = self.predictor()
            step = p.chunk_rows
            parts, bar = [have], progress(len(todo), f"llm {source}", unit="row")
            for i in range(0, len(todo), step):
                part = todo.iloc[i:i + step]
                raw = p.predict_batch(list(part[C.COL_ORIGINAL]), list(part[C.COL_REWRITTEN]))
                parts.append(pd.DataFrame({C.COL_ID: part[C.COL_ID].astype(str), "raw": [r or "" for r in raw],
                                           "confidence": p.confidence}))
                atomic_write_csv(f, pd.concat(parts, ignore_index=True))  # each chunk kept: a killed run resumes
                bar.update(len(part))
            bar.close()
            have = pd.read_csv(f, dtype={C.COL_ID: str}, keep_default_na=False)
        got = have.drop_duplicates(C.COL_ID).set_index(C.COL_ID)
        out = got.reindex(ids)
        out.insert(0, C.COL_ID, list(ids))
        return out.reset_index(drop=True)
