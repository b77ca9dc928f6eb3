"""`recover train sft|dpo|chain`: the parsers and the handlers, beside the code they wire (recover/cli.py lists the
stages)."""
from __future__ import annotations

import sys

from .. import constants as C
from .chain import run_chain
from .chain_config import ChainConfig, resolve_chain_recipe
from .recipe import RECIPES
from .ship_lora import SHIP_STAGES, ship_adapter


def _train_lora(a):
    from .run import train  # train.run imports transformers: heavy, optional extra

    train(a.action, a.recipe, a.overrides)


CHAIN_KEYS = ("data", "holdout", "out", "sft_rows", "dpo_rows", "k", "eval_rows", "n_ctx", "temperature", "margin",
              "pair_engine", "sample_batch_rows", "sft_lr", "dpo_lr", "dpo_beta", "dpo_sft_weight", "seed")


def _train_chain(a):
    cfg = ChainConfig.load(resolve_chain_recipe(a.recipe), {k: getattr(a, k) for k in CHAIN_KEYS})
    run_chain(cfg, a.stages.split(",") if a.stages else None)
    if a.ship:
        ship_adapter(cfg, a.ship, "recover " + " ".join(sys.argv[1:]), loso_from=a.loso_from, stage=a.ship_stage)


def built_in_recipes(chain: bool) -> list[str]:
    """The recipe names --recipe accepts besides a path: chain-*.yaml for `train chain`, the rest for sft/dpo."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml") if p.stem.startswith("chain-") == chain)


def add_cli(sub) -> None:
    s = sub.add_parser("train", help="train a predictor")
    s.set_defaults(training_stack=True)
    tsub = s.add_subparsers(dest="action", required=True, metavar="<action>")
    for stage in ("sft", "dpo"):
        t = tsub.add_parser(stage, help=f"{stage.upper()} LoRA/QLoRA adapter (trl + peft); extra --key value override the recipe")
        t.add_argument("--recipe", help="YAML path or built-in name: " + ", ".join(built_in_recipes(chain=False)))
        t.set_defaults(fn=_train_lora, overrides=[])

    t = tsub.add_parser("chain", help="SFT -> on-policy pairs -> DPO -> LoRA GGUFs -> held-out eval, under LOSO; resumable")
    t.add_argument("--recipe", help="chain YAML path or built-in name: " + ", ".join(built_in_recipes(chain=True)))
    t.add_argument("--data", action="append", help="labelled pairs CSV per source; repeat (overrides the recipe)")
    t.add_argument("--holdout", help="source (file stem) held out for evaluation; none = the final fit on every source")
    t.add_argument("--out", help="chain folder (default build/train-dev)")
    t.add_argument("--stages", help="comma-separated subset, in order (default: all)")
    for key, typ in (("sft_rows", int), ("dpo_rows", int), ("k", int), ("eval_rows", int), ("n_ctx", int),
                     ("temperature", float), ("margin", float), ("sample_batch_rows", int), ("sft_lr", float),
                     ("dpo_lr", float), ("dpo_beta", float), ("dpo_sft_weight", float), ("seed", int)):
        t.add_argument("--" + key.replace("_", "-"), dest=key, type=typ)
    t.add_argument("--pair-engine", dest="pair_engine", choices=C.ENGINES,
                   help="the engine that draws the DPO pairs (default llama: its draws trained better adapters)")
    t.add_argument("--ship", metavar="NAME", help="after the chain: copy the SFT+DPO LoRA GGUF to recover/assets/lora/NAME")
    t.add_argument("--ship-stage", default="dpo", choices=SHIP_STAGES,
                   help="which adapter --ship copies: dpo (SFT+DPO, default) or sft")
    t.add_argument("--loso-from", metavar="ADAPTER", help="--ship of a final fit (--holdout none): the LOSO adapter, "
                   "same recipe, whose held-out figures and --combine it carries")
    t.set_defaults(fn=_train_chain)
