#!/usr/bin/env bash
# llm+suffix against llm+mean, held out both ways on two Gemma folds the shipped adapter never trained on
# (it saw gemma_rewrites_a + gpt35_rewrites_c): its predictions (the CPU default engine, --combine llm) on
# 300 seeded rows of gemma_rewrites_b and of gemma_rewrites_d; a suffix fitted on one file's predictions
# (`recover meanprompt suffix`, 200 rows) is scored on the other's; llm+mean appends the shipped mean prompt. Paired
# steps per fold: llm -> llm+mean -> llm+suffix (recover eval --pred). PROXY SCS.
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
cd "$(dirname "$0")/.."
mkdir -p build/suffix/subset
R=HF_HUB_OFFLINE=1
for src in gemma_rewrites_b gemma_rewrites_d; do
  t=build/suffix/subset/$src.csv
  [ -f $t ] || "$PY" -c "
import pandas as pd
pd.read_csv('$DATA_DIR/$src.csv', keep_default_na=False).sample(n=300, random_state=1234).to_csv('$t', index=False)"
  [ -f build/suffix/$src.llm.csv ] || env HF_HUB_OFFLINE=1 "$PY" -m recover predict --input $t --output build/suffix/$src.llm.csv \
    --predictor llm --model pypi:smollm2 --lora smollm2-dpo --combine llm > build/suffix/$src.predict.log 2>&1
  "$PY" -c "
import pandas as pd
from recover.meanprompt.prompt import MeanPrompt, combine
from recover.score.embedder import TokenCap, resolve_embedder
from recover.csvio import write_submission
cap, mean = TokenCap.from_spec(resolve_embedder(None)), MeanPrompt.load().prompt
d = pd.read_csv('build/suffix/$src.llm.csv', keep_default_na=False)
write_submission('build/suffix/$src.llm+mean.csv', list(d.id), [cap(combine(p, mean, 'pred+mean')) for p in d.rewrite_prompt])"
done
fit() {  # fit on $1's predictions, join to $2's
  env HF_HUB_OFFLINE=1 "$PY" -m recover meanprompt suffix --pred build/suffix/$1.llm.csv --data build/suffix/subset/$1.csv \
    --out build/suffix/fit_on_$1.json --apply-to build/suffix/$2.llm.csv 2>&1 | grep -E "suffix fit|wrote build/suffix/fit"
}
fit gemma_rewrites_d gemma_rewrites_b
fit gemma_rewrites_b gemma_rewrites_d
for src in gemma_rewrites_b gemma_rewrites_d; do
  env HF_HUB_OFFLINE=1 "$PY" -m recover eval --data $DATA_DIR/gemma_rewrites_a.csv --data build/suffix/subset/$src.csv \
    --holdout $src --methods mean --pred llm=build/suffix/$src.llm.csv --pred llm+mean=build/suffix/$src.llm+mean.csv \
    --pred llm+suffix=build/suffix/$src.llm.suffix.csv --report build/suffix/eval_$src 2>&1 | grep -A4 "paired steps\|^method" | grep -v "^--"
done
