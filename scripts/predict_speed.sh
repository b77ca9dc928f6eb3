#!/usr/bin/env bash
# The 1,400-row speed figure of README: `recover predict` with no flags (the shipped default) on 1,400 rows
# drawn (seed 1234) from the five shared sources, cold: a fresh output, no checkpoint. Prints wall seconds.
#   bash scripts/predict_speed.sh [ROWS [recover predict flags...]]   e.g. 1400 --embed-dtype fp32
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
df = load_pairs([S + f for f in ("gemma_rewrites_a.csv", "gemma_rewrites_b.csv", "gemma_rewrites_d.csv",
                                 "gpt35_rewrites_c.csv", "llama_rewrites_e.csv")])
df.sample(n=int(sys.argv[1]), random_state=1234)[["id", "original_text", "rewritten_text"]].to_csv(
    "build/speed/test.csv", index=False)
PY
rm -f build/speed/submission.csv build/speed/submission.csv.partial.jsonl
start=$(date +%s.%N)
HF_HUB_OFFLINE=1 "$PY" -m recover predict --input build/speed/test.csv --output build/speed/submission.csv "$@"
end=$(date +%s.%N)
python3 -c "print(f'recover predict (default, ${*:-no flags}): $ROWS rows in {$end - $start:.1f} s wall')"
