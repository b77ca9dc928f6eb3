"""`recover predict`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

from dataclasses import fields

from .. import constants as C
from ..cli_args import _add_llm_args, _llm_options
from ..meanprompt.prompt import COMBINE_ALIASES, COMBINE_MODES
from ..score.embedder import DTYPES as EMBED_DTYPES
from .config import ON_MODEL_ERROR, PREDICTORS, PredictConfig
from .defaults import predict_config
from .ensemble import shipped_ensembles
from .runner import run_predict


def _predict(a):
    # every PredictConfig field that is a flag comes from the parsed flags as it is; predict_config resolves the rest
    flags = {f.name: getattr(a, f.name) for f in fields(PredictConfig) if hasattr(a, f.name)}
    flags.update(preset_name=a.preset, llm=_llm_options(a))
    run_predict(predict_config(**flags))


def add_cli(sub) -> None:
    s = sub.add_parser("predict", help="write submission.csv for a test CSV")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--predictor", choices=PREDICTORS,
                   help="default: the shipped default (recover/assets/default_predictor.json), or what --model is")
    s.add_argument("--preset", choices=C.PRESETS, help="serve here, on this CPU, exactly what that context serves by "
                   "default (kaggle: the ensemble `make datasets` stages for the submission notebook; "
                   "recover/assets/presets.json); --model may name a staged copy of its base GGUF")
    s.add_argument("--ensemble", help="a shipped ensemble's name or an ensemble manifest: several members' answers "
                   f"joined (shipped: {', '.join(shipped_ensembles()) or 'none'})")
    s.add_argument("--model", help="GGUF file (llm) or embed-predictor folder (embed; default: the shipped one); with "
                   "--ensemble: a copy of its LLM members' base GGUF (checked against each adapter's base sha256)")
    s.add_argument("--mean-prompt", help="a mean_prompt JSON or a literal string (default: the shipped one); the "
                   "fallback for empty/failed rows (the embed predictor decodes with the mean prompt it was fitted with)")
    s.add_argument("--combine", choices=COMBINE_MODES + tuple(COMBINE_ALIASES), metavar="MODE",
                   help=f"{' | '.join(COMBINE_MODES + tuple(COMBINE_ALIASES))} (default: the artifact's own choice)")
    s.add_argument("--time-budget", help="e.g. 8h30m: rows the rest of the budget cannot cover get the fallback")
    s.add_argument("--on-model-error", default="fail", choices=ON_MODEL_ERROR)
    s.add_argument("--batch-size", type=int, help="rows per checkpointed chunk (default: llm 8, embed 64)")
    s.add_argument("--seed", type=int, default=C.DEFAULT_SEED)
    s.add_argument("--embedder", help="sentence-transformers folder whose tokenizer caps prompts at 128 tokens")
    s.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    s.add_argument("--run-root", help="where the run folder goes (default: recover_runs/ beside --output)")
    s.add_argument("--embed-dtype", default="auto", choices=EMBED_DTYPES,
                   help="embed predictor's feature encoding: auto = bf16 on a CPU with bf16 hardware (AMX/AVX512_BF16; "
                        "no loss under LOSO, docs/evaluation.md), else fp32. Scoring always uses fp32")
    s.add_argument("--cpu-quant", default="auto",
                   help="on CPU: auto (the packaged model in the quant `make bench-cpu` measured fastest), none, or a quant")
    _add_llm_args(s)
    s.set_defaults(fn=_predict)
