"""`recover predict`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

from .. import constants as C
from ..cli_args import _add_llm_args, _llm_options


def _predict(a):
    from .defaults import resolve_predictor
    from .runner import PredictConfig, run_predict

    llm = _llm_options(a)
    predictor, model = resolve_predictor(a.predictor, a.model)
    if llm and predictor != "llm":
        flag = "--" + next(iter(llm)).replace("_", "-").replace("prefixes", "prefix").replace("lora-path", "lora")
        raise ValueError(f"{flag}: a llama.cpp flag, but the predictor is {predictor!r} (it would be ignored); "
                         "give --model GGUF or --predictor llm")
    cfg = PredictConfig(a.input, a.output, predictor=predictor, model=model, mean_prompt=a.mean_prompt,
                        combine=a.combine, time_budget=a.time_budget, on_model_error=a.on_model_error,
                        batch_size=a.batch_size, seed=a.seed, embedder=a.embedder, restart=a.restart, llm=llm,
                        cpu_quant=a.cpu_quant, embed_dtype=a.embed_dtype)
    run_predict(cfg)


def add_cli(sub) -> None:
    s = sub.add_parser("predict", help="write submission.csv for a test CSV")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--predictor", choices=["mean", "llm", "embed"],
                   help="default: the shipped default (recover/assets/default_predictor.json), or what --model is")
    s.add_argument("--model", help="GGUF file (llm) or embed-predictor folder (embed; default: the shipped one)")
    s.add_argument("--mean-prompt", help="a mean_prompt JSON or a literal string (default: the shipped one); the "
                   "fallback for empty/failed rows (the embed predictor decodes with the mean prompt it was fitted with)")
    s.add_argument("--combine", help="mean | llm | llm+mean | mean+llm | embed | embed+mean")
    s.add_argument("--time-budget", help="e.g. 8h30m: rows the rest of the budget cannot cover get the fallback")
    s.add_argument("--on-model-error", default="fail", choices=["fail", "fallback"])
    s.add_argument("--batch-size", type=int, help="rows per checkpointed chunk (default: llm 8, embed 64)")
    s.add_argument("--seed", type=int, default=C.DEFAULT_SEED)
    s.add_argument("--embedder", help="sentence-transformers folder whose tokenizer caps prompts at 128 tokens")
    s.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    s.add_argument("--embed-dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="embed predictor's feature encoding: auto = bf16 on a CPU with bf16 hardware (AMX/AVX512_BF16; "
                        "no loss under LOSO, README), else fp32. Scoring always uses fp32")
    s.add_argument("--cpu-quant", default="auto",
                   help="on CPU: auto (the packaged model in the quant `make bench-cpu` measured fastest), none, or a quant")
    _add_llm_args(s)
    s.set_defaults(fn=_predict)
