"""`recover` command line: wires subcommands to library functions, nothing more."""
from __future__ import annotations

import argparse
import sys

from .csvio import InputError


def _predict(a):
    from .predict.runner import PredictConfig, run_predict

    llm = {k: v for k, v in {
        "template": a.template, "prefixes": a.prefix, "n_ctx": a.n_ctx, "max_new_tokens": a.max_new_tokens,
        "n_gpu_layers": a.n_gpu_layers, "split_mode": a.split_mode, "tensor_split": a.tensor_split,
        "flash_attn": a.flash_attn, "offload_kqv": a.offload_kqv, "n_batch": a.n_batch, "n_threads": a.n_threads,
        "n_seq": a.n_seq}.items() if v is not None}
    cfg = PredictConfig(a.input, a.output, predictor=a.predictor or ("llm" if a.model and a.model.endswith(".gguf") else "mean"),
                        model=a.model, mean_prompt=a.mean_prompt, combine=a.combine, time_budget=a.time_budget,
                        on_model_error=a.on_model_error, batch_size=a.batch_size, seed=a.seed, embedder=a.embedder,
                        restart=a.restart, llm=llm)
    run_predict(cfg)


def _score(a):
    from .score.embedder import Embedder
    from .score.scoring import run_score

    res = run_score(a.pred, a.truth, Embedder.resolve(a.embedder), report=a.report)
    label = "PROXY SCS" if res.is_proxy else "SCS"
    print(f"{label}: {res.score:.4f} over {res.rows} rows")


def _demo(a):
    from .demo import run_demo

    run_demo(a.out, a.embedder)


def build_parser() -> argparse.ArgumentParser:
    from . import constants as C

    p = argparse.ArgumentParser(prog="recover", description="Recover Gemma's rewrite prompt, offline.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("predict", help="write submission.csv for a test CSV")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--predictor", choices=["mean", "llm", "embed"])
    s.add_argument("--model", help="GGUF file (llm) or embed-predictor folder (embed)")
    s.add_argument("--mean-prompt", help="a mean_prompt JSON or a literal string (default: the shipped one)")
    s.add_argument("--combine", help="mean | llm | llm+mean | mean+llm | embed | embed+mean")
    s.add_argument("--time-budget", help="e.g. 8h30m: rows the rest of the budget cannot cover get the fallback")
    s.add_argument("--on-model-error", default="fail", choices=["fail", "fallback"])
    s.add_argument("--batch-size", type=int, default=8, help="rows per checkpointed chunk")
    s.add_argument("--seed", type=int, default=C.DEFAULT_SEED)
    s.add_argument("--embedder", help="sentence-transformers folder whose tokenizer caps prompts at 128 tokens")
    s.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    g = s.add_argument_group("llama.cpp (see README: Kaggle T4 x2)")
    g.add_argument("--template", help="instruction template: a built-in name or a .jinja/.txt file")
    g.add_argument("--prefix", action="append", help="force the answer to open with this; repeat to concatenate runs")
    g.add_argument("--n-ctx", type=int)
    g.add_argument("--max-new-tokens", type=int)
    g.add_argument("--n-seq", type=int, help="rows decoded together in one llama.cpp batch")
    g.add_argument("--n-gpu-layers", type=int)
    g.add_argument("--split-mode", type=int, help="0 none, 1 layer, 2 row (llama.cpp LLAMA_SPLIT_MODE_*)")
    g.add_argument("--tensor-split", type=lambda s: [float(x) for x in s.split(",")], help="e.g. 0.5,0.5")
    g.add_argument("--flash-attn", type=lambda s: s.lower() in ("1", "true", "yes", "on"))
    g.add_argument("--offload-kqv", type=lambda s: s.lower() in ("1", "true", "yes", "on"))
    g.add_argument("--n-batch", type=int)
    g.add_argument("--n-threads", type=int)
    s.set_defaults(fn=_predict)

    s = sub.add_parser("score", help="sharpened cosine similarity of a submission")
    s.add_argument("--pred", required=True)
    s.add_argument("--truth", required=True)
    s.add_argument("--embedder")
    s.add_argument("--report", help="folder for per_row.csv, summary.json, scs_hist.png")
    s.set_defaults(fn=_score)

    s = sub.add_parser("demo", help="predict + score the built-in sample with the embedded default")
    s.add_argument("--out")
    s.add_argument("--embedder")
    s.set_defaults(fn=_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (InputError, ValueError, FileNotFoundError) as e:
        print(f"recover {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
