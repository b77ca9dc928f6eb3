#!/usr/bin/env bash
# Input length at equal quality (issue: the winners cut inputs to ~512 words). The shipped adapter (trained
# without gemma_rewrites_b, served at n_ctx 320 = ~210 tokens for both texts) predicts the same 300 seeded
# rows of gemma_rewrites_b with the texts cut to other budgets (--n-ctx), on the CPU default engine; then
# PROXY SCS per budget and the paired difference against the served 320, row by row (bootstrap 95% CI).
#   bash scripts/input_cut.sh [N_CTX...]      (default: 224 272 320 416 512)
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
cd "$(dirname "$0")/.."
CTXS="${*:-224 272 320 416 512}"
for n in $CTXS; do
  [ -f build/engine/ctx$n.csv ] || TAG=ctx$n EXTRA="--cpu-quant none --n-ctx $n" bash scripts/engine_compare.sh auto | grep "^engine"
done
preds=""
for n in $CTXS; do preds="$preds --pred ctx$n=build/engine/ctx$n.csv"; done
HF_HUB_OFFLINE=1 "$PY" -m recover eval --data $DATA_DIR/gemma_rewrites_a.csv --data build/engine/subset/gemma_rewrites_b.csv \
  --holdout gemma_rewrites_b --methods mean $preds --report build/engine/eval_cut > build/engine/eval_cut.log 2>&1
"$PY" - <<'PY'
import pandas as pd
from recover.score.stats import bootstrap_ci
pr = pd.read_csv("build/engine/eval_cut/per_row.csv")
pr = pr[pr.method.str.startswith("ctx")]
base = pr[pr.method == "ctx320"].set_index("id").scs
print(f"{'n_ctx':>6} {'SCS':>7}  paired vs 320 [95% CI]")
for m, g in sorted(pr.groupby("method"), key=lambda x: int(x[0][3:])):
    d = (g.set_index("id").scs - base.reindex(g.id).to_numpy()).to_numpy() if m != "ctx320" else None
    ci = bootstrap_ci(d) if d is not None else (0.0, 0.0)
    print(f"{m[3:]:>6} {g.scs.mean():.4f}  " + (f"{d.mean():+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]" if d is not None else "(served)"))
PY
