"""A chain's pair stage on each CPU engine: its first --rows DPO rows sampled from its SFT adapter with its settings
(k, temperature, top_p, margin, serving, seed) and its fold's mean prompt as the fallback; seconds, rows/s and the
pairs each engine's draws make. Run it alone: the two engines share nothing but the cores.
    make experiment NAME=pair_engines ARGS="--chain build/members/qwen-coder-0.5b-loso [--rows 30] [--engines torch,llama]"
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

from recover.csvio import read_table
from recover.data.onpolicy import OnPolicyConfig, build_onpolicy_pairs
from recover.score.embedder import Embedder

ap = argparse.ArgumentParser()
ap.add_argument("--chain", required=True, help="a chain's --out folder whose sft_gguf stage is done")
ap.add_argument("--rows", type=int, default=30, help="at least 1")
ap.add_argument("--engines", default="torch,llama")
a = ap.parse_args()
if a.rows < 1:
    ap.error("--rows: at least 1")

root = Path(a.chain)
c = json.loads((root / "config.json").read_text())["config"]
rows = Path(tempfile.mkdtemp(prefix="pair-engines")) / "rows.csv"
read_table(root / "rows" / "dpo_rows.csv", ("id",)).head(a.rows).to_csv(rows, index=False)
fallback = json.loads((root / "eval" / "mean_prompt.json").read_text())["prompt"]
emb = Embedder.resolve(None)
for engine in a.engines.split(","):
    cfg = OnPolicyConfig(rows=str(rows), out=str(rows.parent / engine / "pairs.jsonl"), model=c["base"],
                         lora=str(root / "gguf" / "sft-lora.gguf"), k=c["k"], temperature=c["temperature"],
                         top_p=c["top_p"], margin=c["margin"], n_ctx=c["n_ctx"], max_new_tokens=c["max_new_tokens"],
                         template=c["template"], fallback=fallback, seed=c["seed"], engine=engine)
    t = time.time()
    rep = build_onpolicy_pairs(cfg, emb, log=lambda *_: None)
    s = time.time() - t
    print(json.dumps({"engine": engine, "rows": a.rows, "seconds": round(s, 1), "rows_per_s": round(a.rows / s, 3),
                      "pairs": rep["pairs"], "mean_gap": rep["mean_gap"], "draws": rep["draws"]}), flush=True)
