#!/usr/bin/env bash
# The CPU engines on the same work: `recover predict --lora smollm2-dpo --combine llm` (the shipped adapter,
# trained without gemma_rewrites_b) on 300 seeded rows of gemma_rewrites_b, once per engine, timed; then the
# PROXY SCS of each (recover eval --pred, paired steps). Usage: bash scripts/engine_compare.sh [ENGINE...]
# Extra predict flags per engine: ENGINE=torch EXTRA="--n-ctx 256" ... (label via TAG=).
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
cd "$(dirname "$0")/.."
mkdir -p build/engine/subset
# named as its source: recover eval scores the held-out fold gemma_rewrites_b = exactly these 300 rows
TEST=build/engine/subset/gemma_rewrites_b.csv
[ -f $TEST ] || "$PY" -c "
import pandas as pd
pd.read_csv('$DATA_DIR/gemma_rewrites_b.csv', keep_default_na=False).sample(n=300, random_state=1234).to_csv('$TEST', index=False)"
for engine in "${@:-llama torch}"; do
  tag=${TAG:-$engine}
  rm -f build/engine/$tag.csv build/engine/$tag.csv.partial.jsonl
  start=$(date +%s.%N)
  HF_HUB_OFFLINE=1 "$PY" -m recover predict --input $TEST --output build/engine/$tag.csv \
    --predictor llm --model pypi:smollm2 --lora smollm2-dpo --combine llm --engine $engine ${EXTRA:-} \
    > build/engine/$tag.log 2>&1 || { tail -5 build/engine/$tag.log; exit 1; }
  grep -E "^wrote|serving" build/engine/$tag.log || true
  end=$(date +%s.%N)
  python3 -c "print(f'engine $tag: 300 rows in {$end - $start:.1f} s wall')"
done
preds=""
for engine in "${@:-llama torch}"; do preds="$preds --pred ${TAG:-$engine}=build/engine/${TAG:-$engine}.csv"; done
HF_HUB_OFFLINE=1 "$PY" -m recover eval --data $DATA_DIR/gemma_rewrites_a.csv --data $TEST \
  --holdout gemma_rewrites_b --methods mean $preds --report build/engine/eval_${TAG:-engines} 2>&1 | grep -A30 "^recover eval" | grep -v "^  "
