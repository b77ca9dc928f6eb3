#!/usr/bin/env bash
# The fit settings, chosen by the selection rule (Gemma folds; recover/eval/select.py): one `recover eval`
# per candidate setting over the five sources, then one table (RULE column = Gemma-fold macro of each
# method). README "Evaluation" quotes this table. Each run: ~6 min with a warm embedding cache.
#   bash scripts/eval_settings.sh            # all variants; reports under build/eval/settings/<name>/
#   ONLY=table bash scripts/eval_settings.sh # the table alone
set -euo pipefail
: "${DATA_DIR:?run it through make: make experiment NAME=<script> (DATA_DIR and PY come from the Makefile)}" "${PY:?run it through make}"
cd "$(dirname "$0")/.."
S="$DATA_DIR"
DATA="--data $S/gemma_rewrites_a.csv --data $S/gemma_rewrites_b.csv --data $S/gemma_rewrites_d.csv --data $S/gpt35_rewrites_c.csv --data $S/llama_rewrites_e.csv"
FILE="--targets-file $S/rewrite_prompts.txt"
NONGEMMA0="--source-weight gpt35_rewrites_c=0 --source-weight llama_rewrites_e=0"
declare -A V=(
  [file-w2]="$FILE --targets-weight 2"
  [file-w0.5]="$FILE --targets-weight 0.5"
  [rows-only]=""
  [rows-only-gemma-rows]="$NONGEMMA0"
  [rows-only-pieces]="--vocab words+pieces"
)
ONLY=${ONLY:-"${!V[@]}"}  # ONLY="a b": just these settings; ONLY=table: print the table of what is there
for name in $ONLY; do
  [ -n "${V[$name]+x}" ] || continue
  out=build/eval/settings/$name
  if [ -f "$out/leaderboard.json" ]; then echo "$name: done ($out)"; continue; fi
  echo "== $name: recover eval $DATA ${V[$name]} --methods mean,embed"
  HF_HUB_OFFLINE=1 "$PY" -m recover eval $DATA ${V[$name]} --methods mean,embed --report "$out" > "$out.log" 2>&1 \
    || { tail -5 "$out.log"; exit 1; }
done
"$PY" - <<'PY'
import json, pathlib
rows = []
for f in sorted(pathlib.Path("build/eval/settings").glob("*/leaderboard.json")):
    d = json.loads(f.read_text())
    for r in d["leaderboard"]:
        rows.append((f.parent.name, r["method"], r["rule"], r["rule_low"], r["rule_high"], r["worst"], r["macro"],
                     *[r.get(f"scs[{s}]", float("nan")) for s in d["select"]]))
    sel = d["select"]
print(f"{'setting':<22} {'method':<7} {'RULE [95% CI]':>25} {'worst':>7} {'macro':>7} " + " ".join(f"{s.replace('_rewrites', ''):>9}" for s in sel))
for r in sorted((r for r in rows if r[1] in ("mean", "embed")), key=lambda r: (r[1], -r[2])):
    print(f"{r[0]:<22} {r[1]:<7} {r[2]:.4f} [{r[3]:.4f}, {r[4]:.4f}] {r[5]:7.4f} {r[6]:7.4f} " + " ".join(f"{x:9.4f}" for x in r[7:]))
PY
