"""`recover` command line: `recover <stage> [<action>]`. A stage with several actions takes the action as a
sub-command with only its own flags (`recover export lora`, `recover kaggle datasets`); a stage with one
action takes none (`recover predict`). Each stage's parser and handler live beside the code they wire
(`add_cli(sub)` in recover/<stage>/cli.py, or <name>_cli.py for a one-module stage); this file lists them."""
from __future__ import annotations

import argparse
import sys

from . import demo_cli, gpu_check_cli
from .bench import cli as bench_cli
from .csvio import InputError
from .data import cli as data_cli
from .eval import cli as eval_cli
from .export import cli as export_cli
from .kaggle import cli as kaggle_cli
from .meanprompt import cli as meanprompt_cli
from .predict import cli as predict_cli
from .quiet import inference_only, quiet_libraries
from .score import cli as score_cli
from .train import cli as train_cli

# the modules whose add_cli(sub) registers their stage, in the order `recover --help` lists them
STAGES = (predict_cli, bench_cli, meanprompt_cli, train_cli, data_cli, export_cli, gpu_check_cli, kaggle_cli,
          score_cli, eval_cli, demo_cli)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """name -> parser of the sub-commands `parser` takes (empty for a leaf command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaves(parser: argparse.ArgumentParser):
    """Every command that runs something (a parser with no sub-commands) under `parser`."""
    subs = subcommands(parser)
    if not subs:
        yield parser
    for child in dict.fromkeys(subs.values()):
        yield from leaves(child)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recover", description="Recover Gemma's rewrite prompt, offline.")
    # overrides: a list only where `--key value` recipe overrides are accepted (train sft/dpo);
    # training_stack: train/export/gpu-check need peft/trl/bitsandbytes, the rest runs without them
    p.set_defaults(overrides=None, training_stack=False)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="<stage>")
    for stage in STAGES:
        stage.add_cli(sub)
    for leaf in leaves(p):
        leaf.set_defaults(command=leaf.prog)  # "recover export lora": how errors name the command
    return p


def entry() -> None:
    """The `recover` console script and `python -m recover`: a whole process for one command."""
    sys.exit(main(block_training_stack=True))


def main(argv=None, block_training_stack: bool = False) -> int:
    """Run one command. block_training_stack hides peft/trl/bitsandbytes for the rest of the PROCESS
    (transformers caches what it found), so only a process's entry point may ask for it."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.overrides is None:
        parser.exit(2, f"{args.command}: error: unrecognized arguments: {' '.join(rest)} (`{args.command} --help`)\n")
    if rest:
        args.overrides = rest  # recipe overrides, validated by TrlParser
    quiet_libraries()
    if block_training_stack and not args.training_stack:
        inference_only()  # peft/trl/bitsandbytes: slow, noisy imports only training and export use
    try:
        args.fn(args)
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"{args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    entry()
