"""Training: the embedding-space predictor (CPU, minutes), SFT and DPO LoRA adapters (trl + peft)."""
