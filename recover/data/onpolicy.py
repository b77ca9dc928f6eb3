"""Stage 5b, on-policy DPO pairs (the seed's method).

For each training row, sample k answers from the CURRENT model (base GGUF + LoRA) with the
served engine at temperature > 0, score each as it would be submitted (cleaned; an unusable
one as the fallback mean prompt) against the true prompt with SCS, and pair chosen = best (a
usable prompt) with rejected = worst when their SCS gap passes a margin. The pair holds the RAW
generations, so DPO trains on what the policy actually wrote. The prompt side is the exact text
the predictor serves with: both texts cut token-exactly by `LlamaPredictor.fit_row`.

Batched on the torch engine: `sample_batch_rows` rows' k samples decode together (each row's prompt
evaluated once), each sample drawn from its own generator seeded from (seed, id, i), so what a row
draws does not depend on its neighbours' draws; llama.cpp samples one row at a time.

Resumable: each row's samples are appended to `<out>.samples.jsonl` as one line; a rerun skips
rows already there (a torn last line from a kill is redone). The batches are fixed by row position
and every seed is per row, so a resumed run writes exactly what an unbroken one would. What else decides
the draws (engine, rows a batch, torch precision, the sampling settings) is recorded beside the file
(`<out>.samples.draw.json`) when its first row is written: a resume with engine auto, perhaps on another
machine whose choice differs, draws with the recorded engine; a resume asking for different draws is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import constants as C
from ..csvio import atomic_write_json, atomic_write_text, read_table
from ..hashing import file_sha256
from ..models.llama_engine import gguf_architecture
from ..models.llm import LlamaConfig, LlamaPredictor
from ..models.postprocess import clean_llm_output
from ..models.prompting import build_messages, load_template
from ..models.serving import served_config
from ..models.shipped import resolve_model_path
from ..progress import progress
from ..score.metric import scs_matrix
from .rewrite import done_ids


@dataclass
class OnPolicyConfig:
    rows: str  # labelled CSV: id, original_text, rewritten_text, rewrite_prompt
    out: str  # DPO pairs JSONL in trl's conversational format
    model: str  # base GGUF (or pypi:smollm2)
    lora: str | None = None  # the current policy's LoRA GGUF on top of it
    k: int = 4
    temperature: float = 0.8
    top_p: float = 0.95
    margin: float = 0.05  # keep a pair only if SCS(chosen) - SCS(rejected) >= margin
    max_rows: int = 0
    n_ctx: int = 320
    max_new_tokens: int = 32
    template: str | None = None
    fallback: str | None = None  # what an unusable sample is submitted as (the mean prompt); None: scored -1
    seed: int = C.DEFAULT_SEED
    n_gpu_layers: int = 0  # the recipe's offload (-1 on a T4): sampling is most of the pair stage's time
    # rows whose k samples decode together on the torch engine (rows x k slots; llama.cpp: one row at a time);
    # 0: as many as fill the rows in flight this machine's CPU choice measured (`make bench-cpu`). A fixed grouping
    # of the file's rows, so a resumed run batches each row with the same neighbours.
    sample_batch_rows: int = 0
    engine: str = "auto"  # as LlamaConfig.engine: auto = what this machine serves with
    torch_dtype: str | None = None  # as LlamaConfig.torch_dtype: None = this machine's choice

    def __post_init__(self):
        if self.k < 2:
            raise ValueError("--k: at least 2 samples per row (chosen and rejected)")
        if self.temperature <= 0:
            raise ValueError("--temperature must be > 0: greedy samples are all the same")
        if not 0 < self.top_p <= 1:
            raise ValueError("--top-p must be in (0, 1]")
        if not 0 <= self.margin < 2:
            raise ValueError("--margin: an SCS gap in [0, 2)")
        if self.seed == 0:
            raise ValueError("--seed 0 means 'random' to llama.cpp; pass a nonzero seed")
        if self.sample_batch_rows < 0:
            raise ValueError("--sample-batch-rows: 0 (from this machine's rows in flight) or more rows")

    @property
    def samples_file(self) -> Path:
        return Path(self.out).with_suffix(".samples.jsonl")

    @property
    def draw_file(self) -> Path:
        return Path(self.out).with_suffix(".samples.draw.json")


def row_seed(seed: int, row_id: str) -> int:
    """A per-row seed, stable across resumes and row order (never 0)."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{row_id}".encode()).digest()[:4], "little")
    return h or 1


def policy(cfg: OnPolicyConfig):
    """The sampling model: k slots a row, times sample_batch_rows on the torch engine (which this machine serves with
    is resolved first: llama.cpp samples one row at a time)."""
    model = resolve_model_path(cfg.model)
    base = LlamaConfig(model=model, seed=cfg.seed, template=cfg.template, n_ctx=cfg.n_ctx, n_seq=None,
                       max_new_tokens=cfg.max_new_tokens, lora_path=cfg.lora, n_gpu_layers=cfg.n_gpu_layers,
                       engine=cfg.engine, torch_dtype=cfg.torch_dtype)
    arch = gguf_architecture(model) if Path(model).is_file() else None  # a missing file: the predictor says so
    served = served_config(base, arch)  # this machine's engine and rows in flight
    rows = (cfg.sample_batch_rows or max(1, served.n_seq // cfg.k)) if served.engine == "torch" else 1
    return LlamaPredictor(replace(base, engine=served.engine, n_seq=cfg.k * rows, torch_dtype=served.torch_dtype))


def sample_rows(cfg: OnPolicyConfig, embedder, log=print) -> Path:
    """Append {id, original, rewritten (as served), true, raw, candidates, scs} per row to samples_file."""
    df = read_table(cfg.rows, (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))
    if cfg.max_rows:
        df = df.head(cfg.max_rows)
    if df.empty:  # no samples file would be written, and an empty pair set is no DPO stage
        raise ValueError(f"{cfg.rows}: no rows to sample (a header and no data)")
    path = cfg.samples_file
    path.parent.mkdir(parents=True, exist_ok=True)
    done = done_ids(path)
    todo = [i for i in range(len(df)) if df.at[i, C.COL_ID] not in done]
    if done:
        log(f"resuming: {len(df) - len(todo)} of {len(df)} rows already sampled in {path}")
    if not todo:
        return path
    _drop_torn_tail(path)
    cfg = follow_draw_record(cfg, bool(done), log)
    p = policy(cfg)
    per = max(1, p.cfg.n_seq // cfg.k)
    if not done:  # the first row: what every later row of this file must be drawn with
        atomic_write_json(cfg.draw_file, draw_record(cfg, p.cfg))
    # the groups are fixed by row position, not by what is left: a resumed group samples with the same
    # neighbours as an unbroken run did (its rows already written are sampled again, not written again)
    groups = sorted({i // per for i in todo})
    bar = progress(len(df), f"sample k={cfg.k}", "row", initial=len(df) - len(todo))
    with path.open("a", encoding="utf-8") as f:
        for g in groups:
            idx = list(range(g * per, min(len(df), (g + 1) * per)))
            for rec in _sample_group(cfg, p, df, idx, embedder):
                if rec["id"] not in done:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    bar.update(1)
            f.flush()
    bar.close()
    p.engine.close()
    return path


def draw_record(cfg: OnPolicyConfig, served=None) -> dict:
    """What decides a row's draws besides its seed: the model and adapter, the sampling settings, and the engine, rows
    a batch and torch precision (`served`: the policy's LlamaConfig as this machine resolved it; None: as `cfg` names
    them). Not how the draws are scored (the fallback prompt, the embedder): each row's scores are stored with it."""
    engine = served.engine if served else cfg.engine
    torch = engine == "torch"
    rows = (served.n_seq // cfg.k if served else cfg.sample_batch_rows) if torch else 1
    return {"engine": engine, "sample_batch_rows": rows,
            "torch_dtype": (served.torch_dtype if served else cfg.torch_dtype) if torch else None,
            "model": _named(cfg.model), "lora_sha256": file_sha256(cfg.lora) if cfg.lora else None, "k": cfg.k,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": cfg.seed, "n_ctx": cfg.n_ctx,
            "max_new_tokens": cfg.max_new_tokens, "template": cfg.template}


def _named(model: str) -> str:
    """A model as named (a PyPI name), or its file's absolute path: a resume from another folder names the same."""
    return str(Path(model).resolve()) if Path(model).is_file() else model


def follow_draw_record(cfg: OnPolicyConfig, resuming: bool, log=print) -> OnPolicyConfig:
    """The config a resumed run draws with. What this run leaves to the machine (engine auto, rows a batch 0, torch
    precision None), possibly another machine whose choice differs, is taken from the record of the rows already
    written; what it names must match the record, or the run is refused (a file of mixed draws is no one run's)."""
    if not resuming or not cfg.draw_file.exists():
        if resuming:
            log(f"{cfg.samples_file}: no draw record (written before one was kept); the rest draw as this machine serves")
        return cfg
    rec = json.loads(cfg.draw_file.read_text(encoding="utf-8"))
    engine = rec["engine"] if cfg.engine == "auto" else cfg.engine
    torch = engine == "torch" and rec["engine"] == "torch"
    cfg = replace(cfg, engine=engine, sample_batch_rows=cfg.sample_batch_rows or (rec["sample_batch_rows"] if torch else 0),
                  torch_dtype=cfg.torch_dtype or (rec["torch_dtype"] if torch else None))
    asked = draw_record(cfg)
    bad = [k for k, v in asked.items() if rec.get(k) != v]
    if bad:
        raise ValueError(f"{cfg.samples_file}: its rows were drawn with " + ", ".join(f"{k}={rec.get(k)!r}" for k in bad)
                         + "; this run asks " + ", ".join(f"{k}={asked[k]!r}" for k in bad)
                         + f": rerun with those, or delete it and {cfg.draw_file.name} to sample afresh")
    log(f"resuming with the draws of the rows already written: {engine}"
        + (f" ({cfg.torch_dtype}, {cfg.sample_batch_rows} rows a batch)" if engine == "torch" else ""))
    return cfg


def _sample_group(cfg: OnPolicyConfig, p, df, idx: list[int], embedder) -> list[dict]:
    """The rows `idx` sampled together, each sample scored as it would be submitted."""
    served = [p.fit_row(df.at[i, C.COL_ORIGINAL], df.at[i, C.COL_REWRITTEN]) for i in idx]
    seeds = [row_seed(cfg.seed, df.at[i, C.COL_ID]) for i in idx]
    samples = p.sample_rows(served, cfg.k, cfg.temperature, seeds, cfg.top_p)
    recs = []
    for i, (o, r), raw in zip(idx, served, samples):
        true = df.at[i, C.COL_PROMPT]
        # Scored as submitted (cleaned), trained as generated (raw): the pairs stay on-policy.
        cands = [clean_llm_output(x) for x in raw]
        # Scored as it would be submitted with --combine llm: nothing usable -> the fallback prompt.
        submitted = [c if c.strip() else (cfg.fallback or " ") for c in cands]
        e = embedder.encode([true] + submitted)
        scs = scs_matrix(e[1:], e[:1])[:, 0]
        if not cfg.fallback:
            scs = np.where([bool(c.strip()) for c in cands], scs, -1.0)  # nothing usable is the worst answer
        recs.append({"id": df.at[i, C.COL_ID], "original": o, "rewritten": r, "true": true, "raw": raw,
                     "candidates": cands, "scs": [round(float(x), 5) for x in scs]})
    return recs


def _drop_torn_tail(path: Path) -> None:
    """A kill mid-write leaves a partial last line; cut it so appends start on a fresh line."""
    if path.exists() and path.stat().st_size:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            path.write_bytes(data[: data.rfind(b"\n") + 1])


def pairs_from_samples(cfg: OnPolicyConfig, log=print) -> dict:
    """chosen = best sample, rejected = worst, kept when the gap passes the margin."""
    tpl = load_template(cfg.template)
    lines, gaps, seen = [], [], set()
    rows = 0
    for line in cfg.samples_file.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # torn tail: that row is resampled on the next run
        if rec["id"] in seen:
            raise ValueError(f"{cfg.samples_file}: row {rec['id']!r} sampled twice")
        seen.add(rec["id"])
        rows += 1
        s = np.asarray(rec["scs"])
        best, worst = int(np.argmax(s)), int(np.argmin(s))
        gap = float(s[best] - s[worst])
        chosen, rejected = rec["raw"][best].strip(), rec["raw"][worst].strip()
        # chosen must be a usable prompt: DPO should teach naming the instruction, not reaching the fallback
        if gap < cfg.margin or not rec["candidates"][best].strip() or chosen == rejected:
            continue
        gaps.append(gap)
        lines.append(json.dumps({"prompt": build_messages(tpl, rec["original"], rec["rewritten"]),
                                 "chosen": [{"role": "assistant", "content": chosen}],
                                 "rejected": [{"role": "assistant", "content": rejected}],
                                 "id": rec["id"], "scs_chosen": float(s[best]), "scs_rejected": float(s[worst])},
                                ensure_ascii=False))
    atomic_write_text(cfg.out, "\n".join(lines) + ("\n" if lines else ""))
    report = {"rows_sampled": rows, "pairs": len(lines), "k": cfg.k, "temperature": cfg.temperature, "top_p": cfg.top_p,
              "margin": cfg.margin, "mean_gap": round(float(np.mean(gaps)), 4) if gaps else None,
              "model": cfg.model, "lora": cfg.lora,
              "draws": json.loads(cfg.draw_file.read_text(encoding="utf-8")) if cfg.draw_file.exists() else None}
    atomic_write_json(Path(cfg.out).with_suffix(".report.json"), report)
    log(f"on-policy pairs: {len(lines)} of {rows} rows passed the SCS margin {cfg.margin} (mean gap {report['mean_gap']})")
    return report


def build_onpolicy_pairs(cfg: OnPolicyConfig, embedder, log=print) -> dict:
    sample_rows(cfg, embedder, log)
    return pairs_from_samples(cfg, log)
