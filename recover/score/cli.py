"""`recover score`: the parser and the handler, beside the code they wire (recover/cli.py lists the stages)."""
from __future__ import annotations

from .embedder import Embedder
from .scoring import run_score


def _score(a):
    res = run_score(a.pred, a.truth, Embedder.resolve(a.embedder), report=a.report)
    label = "PROXY SCS" if res.is_proxy else "SCS"
    print(f"{label}: {res.score:.4f} over {res.rows} rows")


def add_cli(sub) -> None:
    s = sub.add_parser("score", help="sharpened cosine similarity of a submission")
    s.add_argument("--pred", required=True)
    s.add_argument("--truth", required=True)
    s.add_argument("--embedder")
    s.add_argument("--report", help="folder for per_row.csv, summary.json, scs_hist.png")
    s.set_defaults(fn=_score)
