#!/usr/bin/env bash
set -ex
# SFT then DPO of SmolLM2-135M on the dev train split of ../shared/data, each exported to Q8_0 and
# scored on the validation split (zero-shot, SFT, SFT+DPO). Needs `make dev-split` first.
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
R=.venv/bin/recover
date
# 1. training data from the dev TRAIN split only: label (drops the empty rewrites), DPO pairs + SFT rows
$R data label --rewrites build/dev/train.csv --out build/train_data/labelled
$R data pairs --labelled build/train_data/labelled/labelled.csv --out build/train_data/dpo_pairs.jsonl --band-low 0.15 --band-high 0.7
date
# 2. SFT (LoRA) on SmolLM2, export merged Q8_0
$R train sft --recipe smollm2-cpu --train_file build/train_data/dpo_pairs.sft.jsonl --output_dir build/runs/smollm2-sft --max_length 640 --max_train_rows 400 --learning_rate 2e-4
$R export --base pypi:smollm2 --adapter build/runs/smollm2-sft --quant Q8_0 --out build/models/smollm2-sft
date
# 3. DPO on top of the SFT model, export merged Q8_0
$R train dpo --recipe smollm2-cpu --model_name_or_path build/models/smollm2-sft/merged --train_file build/train_data/dpo_pairs.jsonl --output_dir build/runs/smollm2-sft-dpo --max_length 640 --max_train_rows 300 --learning_rate 2e-5
$R export --base build/models/smollm2-sft/merged --adapter build/runs/smollm2-sft-dpo --quant Q8_0 --out build/models/smollm2-sft-dpo
date
# 4. zero-shot base exported the same way (Q8_0), then all three on the validation split
$R export --base pypi:smollm2 --quant Q8_0 --out build/models/smollm2-base
for m in base sft sft-dpo; do
  g=$(ls build/models/smollm2-$m/*-Q8_0.gguf)
  $R predict --input build/dev/val_test.csv --output build/eval/llm_$m.csv --model $g --combine llm --restart --max-new-tokens 32
  $R score --pred build/eval/llm_$m.csv --truth build/dev/val_truth.csv
  $R predict --input build/dev/val_test.csv --output build/eval/llm_mean_$m.csv --model $g --combine llm+mean --restart --max-new-tokens 32
  $R score --pred build/eval/llm_mean_$m.csv --truth build/dev/val_truth.csv
done
date
