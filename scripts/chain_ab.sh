#!/usr/bin/env bash
# Two chains' SFT+DPO adapters, paired on the same rows, served by the same engine today: the chain's held-out
# rows (its split/eval_test.csv, gemma_rewrites_b in the issue-40 A/B; none for a final fit, --holdout none) and all of
# gemma_rewrites_f (neither chain saw it). Each adapter's answers as the chain predicts them (--combine llm --cpu-quant
# none, with the template, n_ctx and max_new_tokens A's chain trained with), then `recover eval`'s paired step A -> B.
# usage: make experiment NAME=chain_ab ARGS="build/train-recipe-abc build/train-fast2-abc [LORA_B]"
# LORA_B: B's LoRA GGUF when its chain stopped at the export check (the .tmp it left, copied with its manifest).
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
A=${1:?usage: chain_ab.sh CHAIN_A CHAIN_B [LORA_B]}; B=${2:?usage: chain_ab.sh CHAIN_A CHAIN_B [LORA_B]}
LORA_B=${3:-$B/gguf/sft-dpo-lora.gguf}
OUT=build/chain-ab-$(basename "$A")-$(basename "$B")
R="$PY -m recover"
HOLD=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['config']['holdout'])" "$A/config.json")
mkdir -p "$OUT"
# f without its truth column, written as the chain writes its own test files (csvio: LF line ends)
$PY -c "import sys; from recover import constants as C; from recover.csvio import atomic_write_csv, read_table
atomic_write_csv(sys.argv[2], read_table(sys.argv[1], C.TEST_COLUMNS)[list(C.TEST_COLUMNS)])" "$DATA_DIR/gemma_rewrites_f.csv" "$OUT/f_test.csv"
# served as the chain trained and serves them (a chain folder made before its exports recorded these, too)
read -r -a SERVE <<< "$($PY -c "import json, sys; from recover.cli_args import LLM_FLAGS; c = json.load(open(sys.argv[1]))['config']
print(' '.join(f'{LLM_FLAGS[k]} {c[k]}' for k in ('template', 'n_ctx', 'max_new_tokens') if c.get(k) is not None))" "$A/config.json")"
predict() {  # input output lora
  $R predict --input "$1" --output "$2" --predictor llm --model pypi:smollm2 --mean-prompt "$A/eval/mean_prompt.json" \
    --combine llm --seed 1234 --cpu-quant none --run-root "$OUT/runs" --lora "$3" "${SERVE[@]}"
}
D=$DATA_DIR
predict "$OUT/f_test.csv" "$OUT/f_a.csv" "$A/gguf/sft-dpo-lora.gguf"
predict "$OUT/f_test.csv" "$OUT/f_b.csv" "$LORA_B"
$R eval --methods mean --protocol loso --data "$D/gemma_rewrites_f.csv" --data "$D/gemma_rewrites_a.csv" \
  --data "$D/gpt35_rewrites_c.csv" --holdout gemma_rewrites_f --pred a="$OUT/f_a.csv" --pred b="$OUT/f_b.csv" --report "$OUT/f"
if [ "$HOLD" = none ]; then  # a final fit: no source held out, f is the only fold neither saw
  echo "a = $A, b = $B ($LORA_B): final fits, the paired step a -> b on f is in $OUT/f/leaderboard.json"; exit 0
fi
predict "$A/split/eval_test.csv" "$OUT/held_a.csv" "$A/gguf/sft-dpo-lora.gguf"
predict "$A/split/eval_test.csv" "$OUT/held_b.csv" "$LORA_B"
# the chain's own sources, its held-out one as the seeded subset it predicted
read -r -a HELD_DATA <<< "$($PY -c "import json, sys, pathlib; c = json.load(open(sys.argv[1]))['config']; print(' '.join(
  x for p in c['data'] for x in ('--data', sys.argv[2] if pathlib.Path(p).stem == c['holdout'] else p)))" \
  "$A/config.json" "$A/split/subset/$HOLD.csv")"
$R eval --methods mean --protocol loso "${HELD_DATA[@]}" --holdout "$HOLD" --pred a="$OUT/held_a.csv" --pred b="$OUT/held_b.csv" --report "$OUT/held"
echo "a = $A, b = $B ($LORA_B): the paired steps a -> b are in $OUT/held/leaderboard.json and $OUT/f/leaderboard.json"
