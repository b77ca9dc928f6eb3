"""`recover meanprompt optimize|bench|suffix`: the parsers and the handlers, beside the code they wire
(recover/cli.py lists the stages)."""
from __future__ import annotations

from .optimize import OptimizeConfig
from .run import VOCAB_SOURCES, MeanPromptJob, run_optimize, run_speed_bench
from .suffix import SUFFIX_DEFAULTS, run_suffix


def _job(a, search: OptimizeConfig, resume: bool = False) -> MeanPromptJob:
    return MeanPromptJob(targets=a.targets or [], bank=a.bank, out=a.out, vocab=a.vocab, vocab_size=a.vocab_size,
                         max_targets=a.max_targets, embedder=a.embedder, resume=resume,
                         search=search)


def _optimize(a):
    run_optimize(_job(a, OptimizeConfig(beam=a.beam, steps=a.steps, prerank=a.prerank, insert_words=a.insert_words,
                                        max_tokens=a.max_tokens), a.resume))


def _bench(a):
    run_speed_bench(_job(a, OptimizeConfig(prerank=a.prerank, max_tokens=a.max_tokens)), a.bench_steps)


def _suffix(a):
    search = OptimizeConfig(**{**SUFFIX_DEFAULTS, **{k: v for k, v in (("steps", a.steps), ("beam", a.beam)) if v}})
    run_suffix(a.pred, a.data, a.out, rows=a.rows, seed=a.seed, embedder=a.embedder, mean_prompt=a.mean_prompt,
               apply_to=a.apply_to or [], into=a.into, make_default=a.make_default, cfg=search)


def _add_target_args(s, out: str) -> None:
    """What both the search and its bench read: targets, vocabulary, embedder, the pre-rank and token cap."""
    s.add_argument("--targets", action="append", help=".txt (one prompt a line) or CSV with rewrite_prompt; repeat")
    s.add_argument("--bank", type=int, default=0, help="add N prompts of the project's own bank as targets")
    s.add_argument("--out", default=out)
    s.add_argument("--vocab", default=VOCAB_SOURCES[0], choices=VOCAB_SOURCES)
    s.add_argument("--vocab-size", type=int, default=3000)
    s.add_argument("--max-targets", type=int, default=0)
    s.add_argument("--prerank", type=int, default=256, help="words sent to the encoder per append; 0 = all")
    s.add_argument("--max-tokens", type=int, default=96)
    s.add_argument("--embedder")


def add_cli(sub) -> None:
    s = sub.add_parser("meanprompt", help="one constant prompt for every row: search it, bench the search, or fit a "
                       "suffix to a predictor's answers")
    actions = s.add_subparsers(dest="action", required=True, metavar="<action>")
    m = actions.add_parser("optimize", help="beam-search the mean prompt over the targets")
    _add_target_args(m, "build/meanprompt/mean_prompt.json")
    m.add_argument("--beam", type=int, default=4)
    m.add_argument("--steps", type=int, default=30)
    m.add_argument("--insert-words", type=int, default=16)
    m.add_argument("--resume", action="store_true", help="continue from --out")
    m.set_defaults(fn=_optimize)

    m = actions.add_parser("bench", help="pre-ranked vs exhaustive greedy append steps (beam 1, append only)")
    _add_target_args(m, "build/meanprompt/bench/bench.json")
    m.add_argument("--bench-steps", type=int, default=4)
    m.set_defaults(fn=_bench)

    m = actions.add_parser("suffix", help="fit a suffix to follow a predictor's own out-of-fold predictions")
    m.add_argument("--pred", required=True, help="submission CSV (id, rewrite_prompt): the predictor's OOF predictions")
    m.add_argument("--data", action="append", required=True, help="labelled pairs CSV holding those ids; repeat")
    m.add_argument("--out", default="build/suffix/suffix.json")
    m.add_argument("--rows", type=int, default=200, help="seeded sample of rows the objective is computed on")
    m.add_argument("--seed", type=int, default=1234)
    m.add_argument("--steps", type=int, help=f"search steps (default {SUFFIX_DEFAULTS['steps']})")
    m.add_argument("--beam", type=int, help=f"(default {SUFFIX_DEFAULTS['beam']})")
    m.add_argument("--mean-prompt", help="the mean prompt the beam also starts from (default: the shipped one)")
    m.add_argument("--embedder")
    m.add_argument("--apply-to", action="append", help="prediction CSV to join the suffix to (-> FILE.suffix.csv); repeat")
    m.add_argument("--into", help="write the suffix into this artifact's manifest (LoRA name/folder, embed folder)")
    m.add_argument("--make-default", action="store_true", help="with --into: the artifact's default combine becomes pred+suffix")
    m.set_defaults(fn=_suffix)
