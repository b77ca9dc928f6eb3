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


def _llm_options(a) -> dict:
    return {k: v for k, v in {
        "template": a.template, "prefixes": a.prefix, "n_ctx": a.n_ctx, "max_new_tokens": a.max_new_tokens,
        "n_gpu_layers": a.n_gpu_layers, "split_mode": a.split_mode, "tensor_split": a.tensor_split,
        "flash_attn": a.flash_attn, "offload_kqv": a.offload_kqv, "n_batch": a.n_batch, "n_threads": a.n_threads,
        "n_seq": a.n_seq, "lora_path": a.lora, "engine": a.engine, "torch_dtype": a.torch_dtype}.items() if v is not None}


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
    g.add_argument("--template", help="instruction template: a built-in name (recover, short) or a .txt file with {original} and {rewritten}")
    g.add_argument("--prefix", action="append", help="force the answer to open with this; repeat to concatenate runs")
    g.add_argument("--n-ctx", type=int)
    g.add_argument("--max-new-tokens", type=int)
    g.add_argument("--n-seq", type=int, help="rows decoded together in one batch")
    g.add_argument("--engine", choices=C.ENGINES,
                   help="auto (default): llama.cpp on a GPU, the CPU engine `make bench-cpu` measured fastest on a CPU; "
                        "torch = the GGUF's weights in torch, rows batched (fast on CPUs with bf16 hardware)")
    g.add_argument("--torch-dtype", choices=C.TORCH_DTYPES,
                   help="torch engine: bf16 (weights + activations), amp (fp32 weights, bf16 matmuls), fp32, int8 "
                        "(int8 weights per channel x activations quantised per token, int8 matmuls); "
                        "default: what `make bench-cpu` chose")
    g.add_argument("--n-gpu-layers", type=int)
    g.add_argument("--split-mode", type=int, help="0 none, 1 layer, 2 row (llama.cpp LLAMA_SPLIT_MODE_*)")
    g.add_argument("--tensor-split", type=lambda s: [float(x) for x in s.split(",")], help="e.g. 0.5,0.5")
    g.add_argument("--flash-attn", type=on_off, metavar="on|off")
    g.add_argument("--offload-kqv", type=on_off, metavar="on|off")
    g.add_argument("--n-batch", type=int)
    g.add_argument("--n-threads", type=int)
    g.add_argument("--lora", help="unmerged LoRA adapter GGUF (recover export model --lora-gguf) or a shipped adapter's name, "
                   "applied at load; --model pypi:smollm2 without it serves the shipped final fit "
                   f"({C.DEFAULT_LORA}); none: the bare base model")
