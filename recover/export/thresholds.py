"""Per-quant logit thresholds for `recover export model`, decided from a measured distribution.

`recover export thresholds` (make export-thresholds) converts a base model to F16 GGUF with the
runtime's own converter, quantizes it to every type in QUANT_TYPES, and measures max |logit diff|
against the fp32 HF model and top-1 agreement on many prompts: the 8 verification prompts plus two
per row of the built-in sample. The threshold for a quant is 1.5x the largest difference measured
(a broken export - wrong tokenizer, a corrupt tensor - is off by far more), so the 8 verification
prompts pass on the measured model by construction and top-1 agreement is what decides a lossy
quant. Written to recover/export/thresholds.json with the distribution and the command.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import constants as C
from ..csvio import atomic_write_json
from ..demo import SAMPLE
from ..models.hf_model import materialize_hf
from ..models.quantize import quantize_gguf
from .llama_src import run_converter
from .verify import PROMPTS, hf_logits, llama_logits
from .verify import THRESHOLDS_FILE  # the table verify reads

MARGIN = 1.5


def measurement_prompts() -> list[str]:
    df = pd.read_csv(SAMPLE, keep_default_na=False)
    rows = [f"Original text: {o}\nRewritten text: {r}" for o, r in zip(df[C.COL_ORIGINAL], df[C.COL_REWRITTEN])]
    return list(PROMPTS) + rows + list(df[C.COL_PROMPT])


def measure_thresholds(base: str, quants: list[str], out_dir: str, command: str, write: bool = True,
                       log=print) -> dict:
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf = materialize_hf(base, None)
    f16 = out / "base-F16.gguf"
    if not f16.is_file():
        run_converter("convert_hf_to_gguf.py", [str(hf), "--outfile", str(f16), "--outtype", "f16"])
    prompts = measurement_prompts()
    _, toks, _ = llama_logits(str(f16), prompts)
    ref = hf_logits(str(hf), toks)
    res = {}
    for q in quants:
        path = f16 if q == "F16" else quantize_gguf(f16, out / f"base-{q}.gguf", q)
        got, _, _ = llama_logits(str(path), prompts)
        n = min(len(ref[0]), len(got[0]))
        diffs = np.array([float(np.max(np.abs(a[:n] - b[:n]))) for a, b in zip(got, ref)])
        agree = sum(int(np.argmax(a[:n]) == np.argmax(b[:n])) for a, b in zip(got, ref))
        res[q] = {"p50": round(float(np.median(diffs)), 3), "p95": round(float(np.percentile(diffs, 95)), 3),
                  "max": round(float(diffs.max()), 3), "top1_agree": f"{agree}/{len(prompts)}",
                  "threshold": math.ceil(MARGIN * float(diffs.max()) * 10) / 10}
        log(f"  {q:7} max|diff| p50 {res[q]['p50']:.3f} p95 {res[q]['p95']:.3f} max {res[q]['max']:.3f} "
            f"top-1 {res[q]['top1_agree']} -> threshold {res[q]['threshold']}")
    report = {"format_version": 1, "kind": "export_thresholds", "model": str(base), "prompts": len(prompts),
              "margin": MARGIN, "quants": res, "seconds": round(time.time() - t0, 1),
              "llama_cpp_python": C.LLAMA_CPP_PYTHON_VERSION, "command": command}
    if write:
        atomic_write_json(THRESHOLDS_FILE, report)
        log(f"wrote {THRESHOLDS_FILE}")
    return report
