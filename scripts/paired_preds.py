"""Submissions made elsewhere, scored on the same rows and paired against the first: PROXY SCS (or the embedder
this machine resolves), each with its bootstrap 95% CI, and each later one minus the first, row by row.
    make experiment NAME=paired_preds ARGS="--truth <labelled CSV> --pred A=a.csv --pred B=b.csv [--ids <CSV>]"
--truth: id + rewrite_prompt (the held-out rows); --ids: score only the ids of this CSV (e.g. a chain's
split/eval_test.csv, or an eval report's per_row.csv); every --pred must answer every scored id. A --pred
CSV@METHOD reads an eval report's per_row.csv, that method's answers (e.g. build/eval/qwen-dpo/per_row.csv@ens:concat):
two evals' joins, paired."""
import argparse
import os
import sys

import pandas as pd

from recover import constants as C
from recover.csvio import read_table
from recover.score.embedder import Embedder
from recover.score.scoring import score_texts
from recover.score.stats import bootstrap_ci


def read_csv_columns(path: str, columns: tuple):
    rows = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        sys.exit(f"{path}: missing column(s) {', '.join(missing)}")
    return rows


def read_eval_answers(path: str, method: str):
    rows = read_csv_columns(path, ("method", C.COL_ID, "pred"))  # every method's rows: ids repeat across them
    rows = rows[rows["method"] == method]
    if rows.empty or rows[C.COL_ID].duplicated().any():
        sys.exit(f"{path}: {'no' if rows.empty else 'more than one fold of'} rows of method {method!r}")
    return rows.rename(columns={"pred": C.COL_PROMPT})[[C.COL_ID, C.COL_PROMPT]]


ap = argparse.ArgumentParser()
ap.add_argument("--truth", required=True)
ap.add_argument("--pred", action="append", required=True, metavar="NAME=CSV")
ap.add_argument("--ids")
a = ap.parse_args()

truth = read_table(a.truth, (C.COL_ID, C.COL_PROMPT))
if a.ids:
    truth = truth[truth[C.COL_ID].isin(set(read_csv_columns(a.ids, (C.COL_ID,))[C.COL_ID]))]
emb = Embedder.resolve(None)
print(f"{len(truth)} rows of {a.truth}; {emb.spec.describe()}")
scores, answers = {}, {}
for spec in a.pred:
    name, _, path = spec.partition("=")
    if not path:
        sys.exit(f"--pred {spec!r}: NAME=CSV")
    method = ""
    if not os.path.isfile(path):  # CSV@METHOD: one method's answers in an eval report
        path, _, method = path.rpartition("@")
    pred = read_eval_answers(path, method) if method else read_table(path, (C.COL_ID, C.COL_PROMPT))
    pred = pred.set_index(C.COL_ID)
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
