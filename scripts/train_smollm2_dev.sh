#!/usr/bin/env bash
# SFT then DPO of SmolLM2-135M on the dev TRAIN split of ../shared/data, each exported to a verified
# Q8_0 GGUF and scored on the validation split: zero-shot vs SFT vs SFT+DPO. Needs `make dev-split`.
# SFT_ROWS / DPO_ROWS size the run (the figures in the notes used 160 / 48 on this 2-core CPU, ~25 min).
set -ex
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
R=.venv/bin/recover
SFT_ROWS=${SFT_ROWS:-160}
DPO_ROWS=${DPO_ROWS:-48}
STAGE=${STAGE:-all}
if [ "$STAGE" = all ]; then
  # 1. training data from the train split only: label (drops the empty rewrites), DPO pairs + SFT rows
  [ -f build/train_data/labelled/labelled.csv ] || $R data label --rewrites build/dev/train.csv --out build/train_data/labelled
  $R data pairs --labelled build/train_data/labelled/labelled.csv --out build/train_data/dpo_pairs.jsonl --band-low 0.15 --band-high 0.7 --max-text-chars 900
  # 2. SFT (LoRA)
  $R train sft --recipe smollm2-cpu --train_file build/train_data/dpo_pairs.sft.jsonl --output_dir build/runs/smollm2-sft \
    --max_length 512 --max_train_rows "$SFT_ROWS" --learning_rate 2e-4
fi
$R export --base pypi:smollm2 --adapter build/runs/smollm2-sft --quant Q8_0 --out build/models/smollm2-sft
# 3. DPO (LoRA) on top of the merged SFT model
$R train dpo --recipe smollm2-cpu --model_name_or_path build/models/smollm2-sft/merged \
  --train_file build/train_data/dpo_pairs.jsonl --output_dir build/runs/smollm2-sft-dpo \
  --max_length 512 --max_train_rows "$DPO_ROWS" --learning_rate 2e-5
$R export --base build/models/smollm2-sft/merged --adapter build/runs/smollm2-sft-dpo --quant Q8_0 --out build/models/smollm2-sft-dpo
# 4. the zero-shot base exported the same way, then all three on the validation split
$R export --base pypi:smollm2 --quant Q8_0 --out build/models/smollm2-base
for m in base sft sft-dpo; do
  g=$(ls build/models/smollm2-$m/*-Q8_0.gguf)
  $R predict --input build/dev/val_test.csv --output build/eval/llm_$m.csv --model "$g" --combine llm --restart
  $R score --pred build/eval/llm_$m.csv --truth build/dev/val_truth.csv
done
g=$(ls build/models/smollm2-sft-dpo/*-Q8_0.gguf)
$R predict --input build/dev/val_test.csv --output build/eval/llm_mean_sft-dpo.csv --model "$g" --combine llm+mean --restart
$R score --pred build/eval/llm_mean_sft-dpo.csv --truth build/dev/val_truth.csv
