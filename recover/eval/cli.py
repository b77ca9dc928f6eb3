"""`recover eval` and `recover probes pick|match|sim`: the parsers and the handlers, beside the code they wire
(recover/cli.py lists the stages)."""
from __future__ import annotations

import sys

from .. import constants as C
from ..cli_args import _named_files
from ..data.prompt_bank import load_prompt_file
from ..data.protocols import PROTOCOLS
from ..meanprompt.probes import load_probes
from ..predict.invert import InvertConfig
from . import probe_sim
from .ensemble import ENS_METHODS
from .methods import VOCABS, FitSettings
from .run import METHODS, EvalConfig, run_eval


def _fit_settings(a):
    weights = {}
    for item in a.source_weight or []:
        name, _, w = item.partition("=")
        try:
            weights[name] = float(w)
        except ValueError:
            raise ValueError(f"--source-weight {item!r}: use SOURCE=WEIGHT, e.g. gpt35_rewrites_c=0.25") from None

    def prompts(files):
        return [b.prompt for f in files or [] for b in load_prompt_file(f)]

    extra, bank = prompts(a.targets_file), prompts(a.bank_file)
    return FitSettings(source_weights=weights, extra_targets=extra, extra_weight=a.targets_weight if extra else 0.0,
                       bank_size=a.bank_size, extra_bank=bank, vocab=a.vocab,
                       probes=load_probes(a.probes) if a.probes else [], probe_groups=a.probe_groups,
                       pool_rows=a.pool_rows, invert=InvertConfig(max_edits=a.invert_edits,
                                                                  blend=a.invert_blend, exact=a.invert_exact))


def _add_fit_args(s):
    g = s.add_argument_group("what a fit may use besides its training rows")
    g.add_argument("--source-weight", action="append", help="SOURCE=W: weight of a source's rows (default 1)")
    g.add_argument("--targets-file", action="append", help="extra mean-prompt targets, one prompt a line (no texts)")
    g.add_argument("--targets-weight", type=float, default=0.5, help="their total weight relative to the training rows")
    g.add_argument("--bank-size", type=int, default=2000, help="project bank prompts the embed predictor decodes to")
    g.add_argument("--bank-file", action="append", help="more decoding prompts, one a line (they ship in the artifact)")
    g.add_argument("--vocab", default="words", choices=VOCABS,
                   help="mean-prompt search vocabulary: the targets' words, or also every piece of the embedder's tokenizer")
    g.add_argument("--probes", help="CSV prompt,score: leaderboard probes; target weights are matched to them")
    g.add_argument("--probe-groups", type=int, default=24, help="target clusters whose weights the probes fit")
    g.add_argument("--invert-edits", type=int, default=4, help="embed-invert / llm+invert: edits per row at most")
    g.add_argument("--invert-blend", type=float, default=0.0, help="... target blended toward the start's embedding (0-1)")
    g.add_argument("--invert-exact", type=int, default=8, help="... encode only the K neighbours best by the additive "
                   "estimate (0: all)")
    g.add_argument("--pool-rows", type=int, default=300, help="llm+suffix / llm+gate: the LLM's answers to this many "
                   "training rows its adapter never saw (seeded) are what they fit on")


def _eval(a):
    run_eval(EvalConfig(data=a.data, methods=a.methods.split(","), protocol=a.protocol, k=a.k, holdout=a.holdout or [],
                        preds=_named_files(a.pred), settings=_fit_settings(a), embedder=a.embedder, cache_dir=a.cache_dir, report=a.report,
                        ship=a.ship, ship_to=a.ship_to, select_on=a.select_on.split(",") if a.select_on else [],
                        references=_named_files(a.reference), lora=a.lora, val_rows=a.val_rows,
                        ensemble=a.ensemble, ship_ensemble=a.ship_ensemble, torch_dtype=a.torch_dtype,
                        ship_preset=a.ship_preset,
                        command="recover " + " ".join(sys.argv[1:]) if a.ship or a.ship_to or a.ship_ensemble else ""))


def _probes_pick(a):
    probe_sim.pick_probes_for_kaggle(a.data, a.k, _fit_settings(a), a.embedder, a.cache_dir, a.out)


def _probes_match(a):
    probe_sim.match_to_file(a.data, _fit_settings(a), a.embedder, a.cache_dir, a.out)


def _probes_sim(a):
    probe_sim.run_probe_sim(probe_sim.ProbeSimConfig(data=a.data, ks=a.k, holdout=a.holdout or [],
                                                     settings=_fit_settings(a), embedder=a.embedder,
                                                     cache_dir=a.cache_dir, out=a.out))


def add_cli(sub) -> None:
    s = sub.add_parser("eval", help="fit predictors under an honest protocol (LOSO / grouped k-fold) and rank them")
    s.add_argument("--data", action="append", required=True, help="labelled pairs CSV, one per source; repeat")
    s.add_argument("--methods", default="mean,mean:shipped,embed", help="comma-separated, of: " + ", ".join(METHODS)
                   + " (embed:bf16: embed fed bf16-encoded held-out features, as predict on a bf16 CPU; llm*: "
                   "eval/llm_methods.py); with --ensemble also members, m:NAME, " + ", ".join(ENS_METHODS))
    s.add_argument("--protocol", default="loso", choices=PROTOCOLS, help="loso (leave one source out) or kfold (prompt-grouped)")
    s.add_argument("--k", type=int, default=5, help="kfold: number of folds")
    s.add_argument("--holdout", action="append", help="loso: hold out only this source (repeat); default each in turn")
    _add_fit_args(s)
    s.add_argument("--embedder")
    s.add_argument("--cache-dir", default="build/cache", help="embeddings by content hash; reruns take seconds")
    s.add_argument("--report", help="folder for leaderboard.csv/json, per_row.csv, leaderboard.png")
    s.add_argument("--pred", action="append", metavar="NAME=CSV",
                   help="also score a submission made outside eval (e.g. an LLM) on the one --holdout source; repeat")
    s.add_argument("--lora", default=C.LOSO_LORA, help="the adapter llm* methods serve: a shipped name or a LoRA GGUF "
                   "with its manifest; folds of sources it trained on are not scored")
    s.add_argument("--val-rows", type=int, help="score a seeded sample of N held-out rows per fold (same rows for "
                   "every method)")
    s.add_argument("--ensemble", metavar="CANDIDATES", help="an ensemble manifest listing candidate members (e.g. "
                   "recover/recipes/ensemble-members.json): adds methods m:NAME (\"members\" = all), ens, ens:concat, ens:mbr, "
                   "ens:invert, each scored on the folds every member it uses held out (eval/ensemble.py)")
    s.add_argument("--ship-ensemble", metavar="NAME", help="write the best join of --ensemble, refitted on every scored "
                   "held-out row, to recover/assets/ensembles/NAME (with its held-out figures)")
    s.add_argument("--ship-preset", choices=C.PRESETS, help="with --ship-ensemble: that ensemble becomes what this "
                   "context serves by default (recover/assets/presets.json: `recover predict --preset`, `make datasets`)")
    s.add_argument("--torch-dtype", choices=C.TORCH_DTYPES, help="run the LLM members on the torch engine in this precision "
                   "(default: this machine's measured choice; fp32 is the lossless reference)")
    s.add_argument("--select-on", help="comma-separated sources whose folds choose the default (default: gemma*)")
    s.add_argument("--reference", action="append", metavar="NAME=JSON",
                   help="also score a fixed mean_prompt JSON on every fold as ref:NAME (e.g. a previous default)")
    s.add_argument("--ship", action="store_true", help="refit the winner on all rows and write the package defaults")
    s.add_argument("--ship-to", metavar="DIR", help="as --ship, into DIR (mean_prompt.json, embed_predictor/, "
                                                     "default_predictor.json): kernels/tune's output for the submission")
    s.set_defaults(fn=_eval)

    # probes: the maths is meanprompt/probes.py, but every action fits eval's mean prompt (probe_sim.py)
    s = sub.add_parser("probes", help="leaderboard probes: pick K to submit, match target weights, simulate under LOSO")
    actions = s.add_subparsers(dest="action", required=True, metavar="<action>")
    p = _probes_parser(actions, "pick", "K prompts to submit as constant submissions", _probes_pick,
                       "build/probes/probes.csv")
    p.add_argument("--k", type=int, default=20, help="probes to pick")
    _probes_parser(actions, "match", "target weights fitted to the probes' public scores (--probes CSV)", _probes_match,
                   "build/probes/weights.csv")
    p = _probes_parser(actions, "sim", "does probe matching help? each Gemma source plays the leaderboard under LOSO",
                       _probes_sim, "build/probes/sim.json")
    p.add_argument("--k", type=lambda v: [int(x) for x in v.split(",")], default=[20, 50], help="probe counts, e.g. 20,50")
    p.add_argument("--holdout", action="append", help="held-out sources (default: the selection folds)")


def _probes_parser(actions, name: str, help_: str, fn, out: str):
    p = actions.add_parser(name, help=help_)
    p.add_argument("--data", action="append", required=True, help="labelled pairs CSV, one per source; repeat")
    _add_fit_args(p)
    p.add_argument("--embedder")
    p.add_argument("--cache-dir", default="build/cache")
    p.add_argument("--out", default=out)
    p.set_defaults(fn=fn)
    return p
