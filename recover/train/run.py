"""`recover train sft|dpo`: LoRA / QLoRA adapters with trl + peft (+ bitsandbytes nf4 4-bit)."""
from __future__ import annotations

import contextlib
import random
import shutil
import time
from pathlib import Path

from .. import constants as C
from ..cpus import keep_freed_memory
from ..csvio import atomic_write_json
from ..models.cpu_choice import read_machine_cache
from ..models.hf_model import materialize_hf
from ..progress import is_terminal
from ..runs import record_run
from .cpu_logps import computed_tokens, labelled_positions_only, share_pair_prompts
from .recipe import LORA_TARGETS, parse_recipe, recipe_bf16_off_here

def load_for_training(m):
    import torch  # torch, transformers: heavy, optional extras
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
    from peft import LoraConfig  # peft: heavy, optional extra

    targets = m.lora_target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise ValueError(f"no LoRA targets known for model_type {model_type!r}: set lora_target_modules")
    return LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, target_modules=targets,
                      task_type="CAUSAL_LM")


def machine_train_args(stage: str, recipe: str | None, overrides: list[str]) -> list[str]:
    """The settings `recover bench --train` measured fastest on THIS machine (bf16 autocast, no gradient
    checkpointing, length-bucketed batches): for CPU recipes only, and never over a flag given on the command line."""
    choice = read_machine_cache(C.TRAIN_CHOICE_PREFIX)
    if not choice or parse_recipe(stage, recipe, overrides)[0].target_hardware != "cpu":
        return []
    args = choice.get("args", [])
    return [x for k, v in zip(args[::2], args[1::2]) if k not in overrides for x in (k, v)]


def train(stage: str, recipe: str | None, overrides: list[str], log=print, measured: bool = True) -> Path:
    """measured: apply this machine's measured training settings (`machine_train_args`); the bench sets False."""
    from transformers import set_seed  # transformers: heavy, optional extra

    extra = machine_train_args(stage, recipe, overrides) if measured else []
    if extra:
        log(f"{stage}: this machine's measured training settings (recover bench --train): {' '.join(extra)}")
    if recipe_bf16_off_here(recipe, extra + list(overrides)):
        log(f"{stage}: recipe {recipe} asks for bf16 autocast; this CPU has no bf16 hardware: training in float32")
    m, d, t = parse_recipe(stage, recipe, extra + list(overrides))
    # half a CPU step's time was page faults (cpus.py); the arithmetic is the same. Not on a GPU machine: there the
    # host frees the model's load-time copies, which a never-trimmed heap would keep
    heap = keep_freed_memory(large_blocks=True) if m.keep_freed_memory and m.target_hardware == "cpu" else False
    if not is_terminal():
        t.disable_tqdm = True  # EtaLog prints a line every ~30 s instead of a carriage-return flood
    set_seed(t.seed)
    out = Path(t.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record_run(out, {"stage": stage, "recipe": str(recipe), "model": vars(m), "data": vars(d),
                     "training": t.to_dict()}, t.seed)
    base, tok, model = load_for_training(m)
    if m.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing)
    trainer = make_trainer(stage, m, d, t, model, tok)
    trainer.add_callback(EtaLog(stage, log))
    bucket_by_length(trainer)
    on_cpu = m.target_hardware == "cpu"
    labelled = on_cpu and m.labelled_positions_only
    shared = stage == "dpo" and on_cpu and m.share_pair_prompts
    shared_calls = share_pair_prompts(trainer.model) if shared else None
    resume = last_checkpoint(out)
    if resume:
        log(f"{stage}: resuming from {resume}")
    t0 = time.time()
    with labelled_positions_only() if labelled else contextlib.nullcontext():
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.save_model(str(out))
    shutil.rmtree(out / "ref", ignore_errors=True)  # the frozen reference copy is not the result
    tok.save_pretrained(str(out))
    write_metrics(out / "metrics.json", trainer, t, stage, base, time.time() - t0, len(trainer.train_dataset), {
        "freed_memory_kept": heap, "labelled_positions_only": labelled, "share_pair_prompts": shared,
        "fused_calls": shared_calls})
    (out / "base_model.txt").write_text(str(base) + "\n")
    plot_loss(trainer.state.log_history, out / "loss.png", stage)
    log(f"{stage} done in {time.time() - t0:.0f} s: adapter in {out}")
    return out


def make_trainer(stage: str, m, d, t, model, tok):
    """trl's DPOTrainer or SFTTrainer on the recipe's rows, a new LoRA or the one named to continue."""
    from datasets import load_dataset  # datasets, peft, trl: heavy, optional extras

    ds = load_dataset("json", data_files=d.train_file, split="train")
    if d.max_train_rows:
        ds = ds.select(range(min(d.max_train_rows, len(ds))))
    peft_cfg = lora_config(m, model.config.model_type) if m.use_peft else None
    if m.adapter_name_or_path:  # continue this adapter; trl keeps a frozen copy of it as the DPO reference
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, m.adapter_name_or_path, is_trainable=True)
        peft_cfg = None
    # SFT: prompt/completion rows train on the answer only (the texts are input, not something to learn
    # to write); plain "messages" rows train on every token.
    cols = (["prompt", "chosen", "rejected"] if stage == "dpo" else
            ["prompt", "completion"] if "completion" in ds.column_names else ["messages"])
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
    return trainer


def write_metrics(path: Path, trainer, t, stage: str, base, seconds: float, rows: int, settings: dict) -> None:
    """The run's record: loss history, time, the tokens trl counts and those the model ran, the settings."""
    epochs = t.num_train_epochs
    atomic_write_json(path, {"log_history": trainer.state.log_history, "seconds": round(seconds, 1), "base": str(base),
                             "rows": rows, "stage": stage, "tokens": tokens_per_epoch(trainer.train_dataset) * epochs,
                             "tokens_computed": tokens_per_epoch(trainer.train_dataset, settings["share_pair_prompts"])
                             * epochs,
                             "n_params": sum(p.numel() for p in trainer.model.parameters()),
                             "settings": {"bf16": t.bf16, "gradient_checkpointing": t.gradient_checkpointing,
                                          "sampling": str(t.train_sampling_strategy), **settings},
                             "base_4bit_linear_layers": count_4bit_linear(trainer.model)})


def tokens_per_epoch(ds, shared: bool = False) -> int:
    """Tokens one epoch runs through the model: SFT rows as tokenized; a DPO pair's prompt twice (with the chosen
    and with the rejected answer), or once where `shared` (the pair's prompt runs once: cpu_logps.py)."""
    cols = ds.column_names
    if "prompt_ids" in cols:
        if shared:
            return computed_tokens(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"])
        return sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"]))
    return sum(len(x) for x in ds["input_ids"]) if "input_ids" in cols else 0


def bucket_by_length(trainer) -> None:
    """Length-bucketed batches (train_sampling_strategy group_by_length): rows of like length share a batch, so
    little of a step is padding. The order is made here, seeded, and served sequentially: transformers' own
    sampler infers lengths from input_ids only, and trl's DPO drops any length column before the sampler sees it."""
    args, ds = trainer.args, trainer.train_dataset
    if str(args.train_sampling_strategy) != "group_by_length":
        return
    if "input_ids" in ds.column_names:
        lengths = [len(x) for x in ds["input_ids"]]
    else:
        lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"])]
    trainer.train_dataset = ds.select(length_bucket_order(lengths, args.train_batch_size *
                                                          args.gradient_accumulation_steps, args.seed))
    args.train_sampling_strategy = "sequential"


def length_bucket_order(lengths: list[int], batch: int, seed: int, mega: int = 50) -> list[int]:
    """Row order for length-bucketed batches: shuffled, cut into megabatches of `mega` batches, each sorted by
    length and cut into batches; the batches then go in a seeded random order, the one holding the longest row first
    (memory runs out at once or not at all). Unlike transformers' LengthGroupedSampler the batches are not served
    longest to shortest: a one-epoch chain of 300 rows is a single megabatch, and that would be a curriculum."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for i in range(0, len(order), mega * batch):
        ranked = sorted(order[i:i + mega * batch], key=lambda k: -lengths[k])
        batches += [ranked[j:j + batch] for j in range(0, len(ranked), batch)]
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda j: max(lengths[k] for k in batches[j]), default=0)
    batches.insert(0, batches.pop(longest)) if batches else None
    return [k for b in batches for k in b]


def count_4bit_linear(model) -> int:
    """How many of the model's linear layers hold bitsandbytes 4-bit weights (QLoRA: all of the base)."""
    try:
        from bitsandbytes.nn import Linear4bit  # bitsandbytes: heavy, optional extra
    except ImportError:
        return 0
    return sum(isinstance(m, Linear4bit) for m in model.modules())


def last_checkpoint(out: Path) -> Path | None:
    """The newest complete `checkpoint-N` (trainer_state.json written last) to resume a killed run."""
    done = [p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _eta_callback_base():
    from transformers import TrainerCallback  # transformers: heavy, optional extra

    return TrainerCallback


class EtaLog(_eta_callback_base()):
    """One line per ~30 s with step, loss and ETA: readable in a log, where tqdm's bar is disabled."""

    def __init__(self, stage: str, log=print, every_s: float = 30.0):
        self.stage, self.log, self.every_s = stage, log, every_s
        self.t0 = self.last = None
        self.first = 0

    def on_train_begin(self, args, state, control, **kw):
        self.t0 = self.last = time.monotonic()
        self.first = state.global_step
        self.log(f"{self.stage}: {state.max_steps} optimiser steps (starting at {state.global_step})")

    def on_log(self, args, state, control, logs=None, **kw):
        now = time.monotonic()
        if not logs or "loss" not in logs:
            return
        if now - self.last < self.every_s and state.global_step < state.max_steps:
            return
        self.last = now
        done = state.global_step - self.first
        rate = (now - self.t0) / max(done, 1)
        loss = round(float(logs["loss"]), 4)
        self.log(f"{self.stage}: step {state.global_step}/{state.max_steps}, loss {loss}, "
                 f"{rate:.1f} s/step, ETA {(state.max_steps - state.global_step) * rate / 60:.1f} min")


def plot_loss(hist: list[dict], path: Path, stage: str) -> None:
    import matplotlib  # matplotlib: heavy, only for plots

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
