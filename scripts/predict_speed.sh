#!/usr/bin/env bash
# The 1,400-row speed figure of README: `recover predict` with no flags (the shipped default) on 1,400 rows of
# test length, drawn (seed 1234, with replacement past its 485 rows, ids made unique) from the test-like fold
# gemma_rewrites_f (SOURCE=all: the six shared sources), cold: a fresh output, no checkpoint. Prints wall seconds.
#   make experiment NAME=predict_speed ARGS="[ROWS [recover predict flags...]]"   e.g. ARGS="1400 --preset kaggle"
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
cd "$(dirname "$0")/.."
ROWS=${1:-1400}
shift || true
mkdir -p build/speed
"$PY" - "$ROWS" <<'PY'
import os, sys
import pandas as pd
from recover.data.pairs_io import load_pairs
S = os.environ["DATA_DIR"] + "/"
names = ("gemma_rewrites_f.csv",) if os.environ.get("SOURCE", "f") == "f" else (
    "gemma_rewrites_f.csv", "gemma_rewrites_a.csv", "gemma_rewrites_b.csv", "gemma_rewrites_d.csv",
    "gpt35_rewrites_c.csv", "llama_rewrites_e.csv")
df = load_pairs([S + f for f in names])
n = int(sys.argv[1])
out = df.sample(n=n, random_state=1234, replace=n > len(df)).reset_index(drop=True)
out["id"] = [f"{i}-{k}" for k, i in enumerate(out["id"])]  # a row drawn twice is two test rows
out[["id", "original_text", "rewritten_text"]].to_csv("build/speed/test.csv", index=False)
out[["id", "rewrite_prompt"]].to_csv("build/speed/truth.csv", index=False)
PY
rm -f build/speed/submission.csv build/speed/submission.csv.partial.jsonl
start=$(date +%s.%N)
HF_HUB_OFFLINE=1 "$PY" -m recover predict --input build/speed/test.csv --output build/speed/submission.csv "$@"
end=$(date +%s.%N)
python3 -c "print(f'recover predict (default, ${*:-no flags}): $ROWS rows in {$end - $start:.1f} s wall')"
