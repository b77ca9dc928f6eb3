"""`recover meanprompt`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

from .optimize import OptimizeConfig
from .run import MeanPromptJob, run_optimize, run_speed_bench
from .suffix import SUFFIX_DEFAULTS, run_suffix


def _meanprompt(a):
    if a.action == "bench":  # it times single-beam append steps: the search's own knobs would be ignored
        given = [f for f, v, d in (("--beam", a.beam, 4), ("--steps", a.steps, 30), ("--insert-words", a.insert_words, 16),
                                   ("--resume", a.resume, False)) if v != d]
        if given:
            raise ValueError(f"{given[0]}: `meanprompt bench` times --bench-steps greedy append steps (beam 1, "
                             "append only); it takes --prerank, --vocab, --vocab-size, --max-targets, --max-tokens")
    job = MeanPromptJob(targets=a.targets or [], bank=a.bank, out=a.out, vocab=a.vocab, vocab_size=a.vocab_size,
                        max_targets=a.max_targets, embedder=a.embedder, resume=a.resume,
                        search=OptimizeConfig(beam=a.beam, steps=a.steps, prerank=a.prerank,
                                              insert_words=a.insert_words, max_tokens=a.max_tokens))
    run_speed_bench(job, a.bench_steps) if a.action == "bench" else run_optimize(job)


def add_cli(sub) -> None:
    s = sub.add_parser("meanprompt", help="optimise a constant mean prompt (or bench the search)")
    s.add_argument("action", choices=["optimize", "bench"])
    s.add_argument("--targets", action="append", help=".txt (one prompt a line) or CSV with rewrite_prompt; repeat")
    s.add_argument("--bank", type=int, default=0, help="add N prompts of the project's own bank as targets")
    s.add_argument("--out", default="build/meanprompt/mean_prompt.json")
    s.add_argument("--vocab", default="targets", choices=["targets", "tokenizer"])
    s.add_argument("--vocab-size", type=int, default=3000)
    s.add_argument("--max-targets", type=int, default=0)
    s.add_argument("--beam", type=int, default=4)
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--prerank", type=int, default=256, help="words sent to the encoder per append; 0 = all")
    s.add_argument("--insert-words", type=int, default=16)
    s.add_argument("--max-tokens", type=int, default=96)
    s.add_argument("--bench-steps", type=int, default=4)
    s.add_argument("--embedder")
    s.add_argument("--resume", action="store_true", help="continue from --out")
    s.set_defaults(fn=_meanprompt)
    add_suffix_cli(sub)


def _suffix(a):
    search = OptimizeConfig(**{**SUFFIX_DEFAULTS, **{k: v for k, v in (("steps", a.steps), ("beam", a.beam)) if v}})
    run_suffix(a.pred, a.data, a.out, rows=a.rows, seed=a.seed, embedder=a.embedder, mean_prompt=a.mean_prompt,
               apply_to=a.apply_to or [], into=a.into, make_default=a.make_default, cfg=search)


def add_suffix_cli(sub) -> None:
    s = sub.add_parser("suffix", help="fit a suffix to follow a predictor's own out-of-fold predictions")
    s.add_argument("--pred", required=True, help="submission CSV (id, rewrite_prompt): the predictor's OOF predictions")
    s.add_argument("--data", action="append", required=True, help="labelled pairs CSV holding those ids; repeat")
    s.add_argument("--out", default="build/suffix/suffix.json")
    s.add_argument("--rows", type=int, default=200, help="seeded sample of rows the objective is computed on")
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--steps", type=int, help="search steps (default 12)")
    s.add_argument("--beam", type=int)
    s.add_argument("--mean-prompt", help="the mean prompt the beam also starts from (default: the shipped one)")
    s.add_argument("--embedder")
    s.add_argument("--apply-to", action="append", help="prediction CSV to join the suffix to (-> FILE.suffix.csv); repeat")
    s.add_argument("--into", help="write the suffix into this artifact's manifest (LoRA name/folder, embed folder)")
    s.add_argument("--make-default", action="store_true", help="with --into: the artifact's default combine becomes pred+suffix")
    s.set_defaults(fn=_suffix)
