"""`recover train sft|dpo`: LoRA / QLoRA adapters with trl + peft (+ bitsandbytes nf4 4-bit)."""
from __future__ import annotations

import time
from pathlib import Path

from ..csvio import atomic_write_json
from ..runs import record_run
from .hf_model import materialize_hf
from .recipe import LORA_TARGETS, parse_recipe

def load_for_training(m):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    base = materialize_hf(m.model_name_or_path, m.gguf_file)
    dtype = getattr(torch, m.torch_dtype)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    quant = None
    if m.load_in_4bit:  # QLoRA: nf4 weights, double quantisation, compute in torch_dtype
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, quantization_config=quant)
    return base, tok, model


def lora_config(m, model_type: str):
    from peft import LoraConfig

    targets = m.lora_target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise ValueError(f"no LoRA targets known for model_type {model_type!r}: set lora_target_modules")
    return LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, target_modules=targets,
                      task_type="CAUSAL_LM")


def train(stage: str, recipe: str | None, overrides: list[str], log=print) -> Path:
    from datasets import load_dataset
    from transformers import set_seed

    m, d, t = parse_recipe(stage, recipe, overrides)
    set_seed(t.seed)
    out = Path(t.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record_run(out, {"stage": stage, "recipe": str(recipe), "model": vars(m), "data": vars(d),
                     "training": t.to_dict()}, t.seed)
    base, tok, model = load_for_training(m)
    if m.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing)
    ds = load_dataset("json", data_files=d.train_file, split="train")
    if d.max_train_rows:
        ds = ds.select(range(min(d.max_train_rows, len(ds))))
    peft_cfg = lora_config(m, model.config.model_type) if m.use_peft else None
    cols = ["prompt", "chosen", "rejected"] if stage == "dpo" else ["messages"]
    ds = ds.select_columns(cols)
    # eval_file: scored every eval_steps by the trainer (eval loss; DPO adds reward margins/accuracies)
    eval_ds = load_dataset("json", data_files=d.eval_file, split="train").select_columns(cols) if d.eval_file else None
    if stage == "dpo":
        from trl import DPOTrainer

        trainer = DPOTrainer(model=model, args=t, train_dataset=ds, eval_dataset=eval_ds, processing_class=tok,
                             peft_config=peft_cfg)
    else:
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, args=t, train_dataset=ds, eval_dataset=eval_ds, processing_class=tok,
                             peft_config=peft_cfg)
    t0 = time.time()
    trainer.train()
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    hist = trainer.state.log_history
    atomic_write_json(out / "metrics.json", {"log_history": hist, "seconds": round(time.time() - t0, 1),
                                             "base": str(base), "rows": len(ds), "stage": stage})
    (out / "base_model.txt").write_text(str(base) + "\n")
    plot_loss(hist, out / "loss.png", stage)
    log(f"{stage} done in {time.time() - t0:.0f} s: adapter in {out}")
    return out


def plot_loss(hist: list[dict], path: Path, stage: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(h["step"], h["loss"]) for h in hist if "loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if pts:
        ax.plot(*zip(*pts), marker=".")
    ax.set(title=f"{stage} training loss", xlabel="step", ylabel="loss")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
