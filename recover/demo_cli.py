"""`recover demo`: the parser and the handler, beside the code they wire (recover/cli.py lists the stages)."""
from __future__ import annotations

from .demo import run_demo


def _demo(a):
    run_demo(a.out, a.embedder)


def add_cli(sub) -> None:
    s = sub.add_parser("demo", help="predict + score the built-in sample with the embedded default")
    s.add_argument("--out")
    s.add_argument("--embedder")
    s.set_defaults(fn=_demo)
