"""Stage 3, rewrite: an LLM rewrites each original with a bank prompt, as the competition did.

Gemma-7b-it got "the prompt then the text" as one user turn in its chat format; we do the same
with whatever GGUF is given (its own chat template). Jobs are numbered deterministically, so
`--shard i/N` takes every N-th job and `merge` puts shards back in job order: N shards merged
equal one unsharded run. Output is append-only JSONL, fsynced per row: a killed job resumes
without losing or duplicating rows.
"""
from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_csv, ensure_trailing_newline, read_table
from ..progress import progress
from .generate import ChatGenerator
from .prompt_bank import BankPrompt, generate_bank, load_prompt_file

REWRITE_TEMPLATE = "{prompt}\n\n{original}"  # the prompt, then the text


@dataclass
class RewriteConfig:
    originals: str
    out_dir: str
    model: str
    bank_size: int = 2000
    bank_file: str | None = None
    per_original: int = 1
    max_new_tokens: int = 256
    temperature: float = 0.0
    n_ctx: int = 2048
    n_gpu_layers: int = 0
    shard: str = "0/1"
    limit: int = 0
    seed: int = C.DEFAULT_SEED

    def __post_init__(self):
        try:
            i, n = (int(x) for x in self.shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard {self.shard!r}: use i/N, e.g. 0/4") from None
        if not 0 <= i < n:
            raise ValueError(f"--shard {self.shard}: need 0 <= i < N")
        self.shard_i, self.shard_n = i, n
        if self.seed == 0:
            raise ValueError("seed 0 means random to llama.cpp: pass a nonzero seed")

    @property
    def shard_file(self) -> Path:
        return Path(self.out_dir) / f"rewrites.shard-{self.shard_i}-of-{self.shard_n}.jsonl"


def plan_jobs(originals: pd.DataFrame, bank: list[BankPrompt], per_original: int, seed: int) -> list[dict]:
    """Deterministic (original, prompt) jobs: the same inputs always give the same numbered list."""
    rng = random.Random(seed)
    jobs = []
    for _, row in originals.iterrows():
        for k in range(per_original):
            b = bank[rng.randrange(len(bank))]
            jobs.append({"job": len(jobs), "id": f"{row[C.COL_ID]}-{k}", "original_id": row[C.COL_ID],
                         C.COL_ORIGINAL: row[C.COL_ORIGINAL], C.COL_PROMPT: b.prompt, "category": b.category,
                         "form": b.form, "style": b.style, "tone": b.tone, "audience": b.audience})
    return jobs


def load_bank(cfg: RewriteConfig) -> list[BankPrompt]:
    return load_prompt_file(cfg.bank_file) if cfg.bank_file else generate_bank(cfg.bank_size, cfg.seed)


def done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError):
            continue  # a torn last line from a kill: that job is redone
    return ids


def run_rewrite(cfg: RewriteConfig, log=print) -> dict:
    originals = read_table(cfg.originals, (C.COL_ID, C.COL_ORIGINAL))
    jobs = plan_jobs(originals, load_bank(cfg), cfg.per_original, cfg.seed)
    mine = [j for j in jobs if j["job"] % cfg.shard_n == cfg.shard_i]
    if cfg.limit:
        mine = mine[: cfg.limit]
    path = cfg.shard_file
    path.parent.mkdir(parents=True, exist_ok=True)
    have = done_ids(path)
    todo = [j for j in mine if j["id"] not in have]
    log(f"shard {cfg.shard}: {len(mine)} jobs, {len(have & {j['id'] for j in mine})} done, {len(todo)} to go")
    if not todo:
        return {"jobs": len(mine), "written": 0}
    gen = ChatGenerator(cfg.model, seed=cfg.seed, n_ctx=cfg.n_ctx, temperature=cfg.temperature,
                        n_gpu_layers=cfg.n_gpu_layers)
    prov = {**gen.provenance(), "template": REWRITE_TEMPLATE, "max_new_tokens": cfg.max_new_tokens}
    ensure_trailing_newline(path)
    t0 = time.time()
    with path.open("a", encoding="utf-8") as f:
        bar = progress(len(todo), f"rewrite {cfg.shard}", "row")
        for j in todo:
            user = REWRITE_TEMPLATE.format(prompt=j[C.COL_PROMPT], original=j[C.COL_ORIGINAL])
            text, truncated = gen.chat(user, cfg.max_new_tokens, cfg.seed + j["job"])
            rec = {**j, C.COL_REWRITTEN: text, "truncated": truncated, **prov,
                   "job_seed": cfg.seed + j["job"], "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(1)
    dt = time.time() - t0
    log(f"rewrote {len(todo)} rows in {dt:.0f} s ({60 * len(todo) / dt:.1f} rows/min)")
    return {"jobs": len(mine), "written": len(todo), "rows_per_min": 60 * len(todo) / dt}


def merge_shards(out_dir: str, out_csv: str | None = None) -> Path:
    """All shard files -> rewrites.csv in job order; a job present twice is an error, not a silent pick."""
    recs = {}
    for p in sorted(Path(out_dir).glob("rewrites.shard-*-of-*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            same = lambda a, b: {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in b.items() if k != "time"}  # noqa: E731
            if r["id"] in recs and not same(recs[r["id"]], r):
                raise ValueError(f"{p}: job {r['id']} differs from another shard's copy")
            recs[r["id"]] = r
    df = pd.DataFrame(sorted(recs.values(), key=lambda r: r["job"]))
    out = Path(out_csv or Path(out_dir) / "rewrites.csv")
    atomic_write_csv(out, df)
    return out
