"""The CPU engine's users timed per torch precision on the same rows: the before/after of an engine change.
  pairs: the chain's on-policy pair stage (`recover.data.onpolicy.sample_rows`: k samples a row from the
         shipped adapter, scored; --batch-rows: rows sampled together, one timing each);
  eval:  `recover eval`'s LLM rows (`recover.eval.llm_rows.FoldLLM.rows`: the LOSO adapter on its held-out
         source, as an eval fold asks for them, into a fresh cache).
    make experiment NAME=stage_speed ARGS="--rows 40 --dtypes bf16,int8 [--stages pairs,eval] [--batch-rows 1,4]"
Each precision overrides only the torch dtype this machine's CPU choice (models/cpu_choice.py) names.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if "DATA_DIR" not in os.environ:
    sys.exit("run it through make: make experiment NAME=stage_speed (DATA_DIR and PY come from the Makefile)")

import pandas as pd  # noqa: E402

from recover import constants as C  # noqa: E402
from recover.data.onpolicy import OnPolicyConfig, sample_rows  # noqa: E402
from recover.eval.llm_rows import FoldLLM  # noqa: E402
from recover.models import serving as defaults  # noqa: E402
from recover.score.embedder import Embedder  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=40)
ap.add_argument("--k", type=int, default=4)
ap.add_argument("--dtypes", default="bf16,int8")
ap.add_argument("--stages", default="pairs,eval")
ap.add_argument("--batch-rows", default="4", help="pairs: OnPolicyConfig.sample_batch_rows values, comma-separated")
ap.add_argument("--data", default=os.environ["DATA_DIR"] + "/gemma_rewrites_b.csv")
a = ap.parse_args()

shipped = defaults.default_cpu_quant
emb = Embedder.resolve(None)


def pairs(tmp: str, batch_rows: int) -> int:
    lora = f"recover/assets/lora/{C.DEFAULT_LORA}/{C.DEFAULT_LORA}.gguf"
    cfg = OnPolicyConfig(rows=a.data, out=str(Path(tmp) / "pairs.jsonl"), model=C.PYPI_SMOLLM2, lora=lora, k=a.k,
                         max_rows=a.rows, fallback="Rewrite the text.", **batch_kw(batch_rows))
    sample_rows(cfg, emb, log=lambda *_: None)
    recs = [json.loads(x) for x in cfg.samples_file.read_text().splitlines()]
    scs = [r["scs"] for r in recs]
    # what the samples are worth to DPO: the mean SCS of a sample, of a row's best and the best-worst gap
    print(f"  samples: mean SCS {sum(map(sum, scs)) / sum(map(len, scs)):.4f}, mean best {sum(map(max, scs)) / len(scs):.4f}, "
          f"mean gap {sum(max(x) - min(x) for x in scs) / len(scs):.4f}, distinct per row "
          f"{sum(len(set(r['raw'])) for r in recs) / len(recs):.2f}", flush=True)
    return len(recs)


def batch_kw(batch_rows: int) -> dict:
    """The setting only where the code has it: the script also times the code before it (a worktree)."""
    return {"sample_batch_rows": batch_rows} if "sample_batch_rows" in OnPolicyConfig.__dataclass_fields__ else {}


def eval_rows(tmp: str, _batch_rows: int) -> int:
    df = pd.read_csv(a.data, keep_default_na=False, dtype={C.COL_ID: str}).head(a.rows)
    f = FoldLLM(C.LOSO_LORA, tmp, log=lambda *_: None)  # trained without gemma_rewrites_b
    return len(f.rows(Path(a.data).stem, df))


for stage in a.stages.split(","):
    for dtype in a.dtypes.split(","):
        for rows in map(int, a.batch_rows.split(",") if stage == "pairs" else ["1"]):
            defaults.default_cpu_quant = lambda d=dtype: {**(shipped() or {}), "engine": "torch", "torch_dtype": d}
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                n = {"pairs": pairs, "eval": eval_rows}[stage](tmp, rows)
                wall = time.perf_counter() - t
            what = f"{stage}, torch {dtype}" + (f", {rows} rows a batch" if batch_kw(rows) and stage == "pairs" else "")
            print(f"{what}: {n} rows in {wall:.1f} s wall ({wall / n:.3f} s/row, load included)", flush=True)
