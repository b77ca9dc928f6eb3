"""`recover` command line: the list of verbs. Each verb's parser and handler live beside the code they
wire (`add_cli(sub)` in recover/<stage>/cli.py), so adding a verb touches its own module and this list."""
from __future__ import annotations

import argparse
import importlib
import sys

from .csvio import InputError
from .quiet import inference_only, quiet_libraries

# module whose add_cli(sub) registers its verbs, in the order `recover --help` lists them
VERBS = ("predict", "bench", "meanprompt", "train", "data", "export", "gpu_check_cli", "kaggle", "score", "eval", "demo_cli")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recover", description="Recover Gemma's rewrite prompt, offline.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in VERBS:
        mod = importlib.import_module(f".{name}" if name.endswith("_cli") else f".{name}.cli", __package__)
        mod.add_cli(sub)
    return p


def entry() -> None:
    """The `recover` console script and `python -m recover`: a whole process for one command."""
    sys.exit(main(block_training_stack=True))


def main(argv=None, block_training_stack: bool = False) -> int:
    """Run one command. block_training_stack hides peft/trl/bitsandbytes for the rest of the PROCESS
    (transformers caches what it found), so only a process's entry point may ask for it."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not (args.cmd == "train" and args.what in ("sft", "dpo")):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.overrides = rest  # recipe overrides, validated by TrlParser

    quiet_libraries()
    if block_training_stack and args.cmd not in ("train", "export", "export-lora", "export-thresholds", "gpu-check"):
        inference_only()  # only train/export need peft/trl/bitsandbytes (slow, noisy imports)
    try:
        args.fn(args)
    except (InputError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"recover {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    entry()
