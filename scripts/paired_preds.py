"""Submissions made elsewhere, scored on the same rows and paired against the first: PROXY SCS (or the embedder
this machine resolves), each with its bootstrap 95% CI, and each later one minus the first, row by row.
    make experiment NAME=paired_preds ARGS="--truth <labelled CSV> --pred A=a.csv --pred B=b.csv [--ids <CSV>]"
--truth: id + rewrite_prompt (the held-out rows); --ids: score only the ids of this CSV (e.g. a chain's
split/eval_test.csv); every --pred must answer every scored id."""
import argparse
import sys

from recover import constants as C
from recover.csvio import read_table
from recover.score.embedder import Embedder
from recover.score.scoring import score_texts
from recover.score.stats import bootstrap_ci

ap = argparse.ArgumentParser()
ap.add_argument("--truth", required=True)
ap.add_argument("--pred", action="append", required=True, metavar="NAME=CSV")
ap.add_argument("--ids")
a = ap.parse_args()

truth = read_table(a.truth, (C.COL_ID, C.COL_PROMPT))
if a.ids:
    truth = truth[truth[C.COL_ID].isin(set(read_table(a.ids, (C.COL_ID,))[C.COL_ID]))]
emb = Embedder.resolve(None)
print(f"{len(truth)} rows of {a.truth}; {emb.spec.describe()}")
scores, answers = {}, {}
for spec in a.pred:
    name, _, path = spec.partition("=")
    if not path:
        sys.exit(f"--pred {spec!r}: NAME=CSV")
    pred = read_table(path, (C.COL_ID, C.COL_PROMPT)).set_index(C.COL_ID)
    missing = sorted(set(truth[C.COL_ID]) - set(pred.index))
    if missing:
        sys.exit(f"{path}: no answer for {len(missing)} scored ids, e.g. {missing[0]!r}")
    answers[name] = list(pred.loc[truth[C.COL_ID], C.COL_PROMPT])
    scores[name] = score_texts(answers[name], list(truth[C.COL_PROMPT]), emb)
    lo, hi = bootstrap_ci(scores[name])
    print(f"{name:32s} SCS {scores[name].mean():.4f} [{lo:.4f}, {hi:.4f}]")
first = next(iter(scores))
for name in list(scores)[1:]:
    d = scores[name] - scores[first]
    lo, hi = bootstrap_ci(d)
    same = sum(x == y for x, y in zip(answers[name], answers[first]))
    print(f"{name} - {first} (paired) {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]; the same answer on {same} rows")
