"""Argument groups and their translation into config objects, shared by several subcommands."""
from __future__ import annotations

import argparse

from . import constants as C


def _named_files(items) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"{item!r}: use NAME=path (e.g. --pred llm=submission.csv, --reference old=mean_prompt.json)")
        out[name.strip()] = path.strip()
    return out


# LlamaConfig field -> the flag that sets it (its argparse dest is the field), in the order the options are recorded
LLM_FLAGS = {"template": "--template", "prefixes": "--prefix", "n_ctx": "--n-ctx", "max_new_tokens": "--max-new-tokens",
             "n_gpu_layers": "--n-gpu-layers", "split_mode": "--split-mode", "tensor_split": "--tensor-split",
             "flash_attn": "--flash-attn", "offload_kqv": "--offload-kqv", "n_batch": "--n-batch",
             "n_threads": "--n-threads", "n_seq": "--n-seq", "lora_path": "--lora", "engine": "--engine",
             "torch_dtype": "--torch-dtype"}


def _llm_options(a) -> dict:
    """The LLM flags given, as LlamaConfig fields."""
    return {f: getattr(a, f) for f in LLM_FLAGS if getattr(a, f) is not None}


def on_off(text: str) -> bool:
    """A switch: on/off, true/false, yes/no, 1/0; anything else is an error, not a silent 'off'."""
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use on or off")


def _add_llm_args(s):
    g = s.add_argument_group("llama.cpp (Kaggle T4 x2 settings: docs/internals.md)")

    def arg(field, **kw):
        g.add_argument(LLM_FLAGS[field], dest=field, **kw)

    arg("template", help="instruction template: a built-in name (recover, short) or a .txt file with {original} and {rewritten}")
    arg("prefixes", metavar="PREFIX", action="append", help="force the answer to open with this; repeat to concatenate runs")
    arg("n_ctx", type=int)
    arg("max_new_tokens", type=int)
    arg("n_seq", type=int, help="rows decoded together in one batch")
    arg("engine", choices=C.ENGINES,
        help="auto (default): llama.cpp on a GPU, the CPU engine `make bench-cpu` measured fastest on a CPU; "
             "torch = the GGUF's weights in torch, rows batched (fast on CPUs with bf16 hardware)")
    arg("torch_dtype", choices=C.TORCH_DTYPES,
        help="torch engine: bf16 (weights + activations), amp (fp32 weights, bf16 matmuls), fp32, int8 "
             "(int8 weights per channel x activations quantised per token, int8 matmuls); "
             "default: what `make bench-cpu` chose")
    arg("n_gpu_layers", type=int)
    arg("split_mode", type=int, help="0 none, 1 layer, 2 row (llama.cpp LLAMA_SPLIT_MODE_*)")
    arg("tensor_split", type=lambda s: [float(x) for x in s.split(",")], help="e.g. 0.5,0.5")
    arg("flash_attn", type=on_off, metavar="on|off")
    arg("offload_kqv", type=on_off, metavar="on|off")
    arg("n_batch", type=int)
    arg("n_threads", type=int)
    arg("lora_path", metavar="LORA", help="unmerged LoRA adapter GGUF (recover export model --lora-gguf) or a shipped adapter's name, "
        "applied at load; --model pypi:smollm2 without it serves the shipped final fit "
        f"({C.DEFAULT_LORA}); none: the bare base model")
