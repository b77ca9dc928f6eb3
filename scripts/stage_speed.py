"""The CPU engine's users timed per torch precision on the same rows: the before/after of an engine change.
  pairs: the chain's on-policy pair stage (`recover.data.onpolicy.sample_rows`: k samples a row from the
         shipped adapter, scored);
  eval:  `recover eval`'s LLM rows (`recover.eval.llm_rows.FoldLLM.rows`: the LOSO adapter on its held-out
         source, as an eval fold asks for them, into a fresh cache).
    make experiment NAME=stage_speed ARGS="--rows 40 --dtypes bf16,int8 [--stages pairs,eval]"
Each precision overrides only the torch dtype the CPU default (recover/assets/cpu_quant.json) names.
"""
import argparse
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
ap.add_argument("--data", default=os.environ["DATA_DIR"] + "/gemma_rewrites_b.csv")
a = ap.parse_args()

shipped = defaults.default_cpu_quant
emb = Embedder.resolve(None)


def pairs(tmp: str) -> int:
    lora = f"recover/assets/lora/{C.DEFAULT_LORA}/{C.DEFAULT_LORA}.gguf"
    cfg = OnPolicyConfig(rows=a.data, out=str(Path(tmp) / "pairs.jsonl"), model=C.PYPI_SMOLLM2, lora=lora, k=a.k,
                         max_rows=a.rows, fallback="Rewrite the text.")
    sample_rows(cfg, emb, log=lambda *_: None)
    return len(cfg.samples_file.read_text().splitlines())


def eval_rows(tmp: str) -> int:
    df = pd.read_csv(a.data, keep_default_na=False, dtype={C.COL_ID: str}).head(a.rows)
    f = FoldLLM(C.LOSO_LORA, tmp, log=lambda *_: None)  # trained without gemma_rewrites_b
    return len(f.rows(Path(a.data).stem, df))


for stage in a.stages.split(","):
    for dtype in a.dtypes.split(","):
        defaults.default_cpu_quant = lambda d=dtype: {**(shipped() or {}), "engine": "torch", "torch_dtype": d}
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            n = {"pairs": pairs, "eval": eval_rows}[stage](tmp)
            wall = time.perf_counter() - t
        print(f"{stage}, torch {dtype}: {n} rows in {wall:.1f} s wall ({wall / n:.3f} s/row, load included)", flush=True)
