"""Leaderboard arithmetic and reports: bootstrap intervals, per-source breakdown, paired gains."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..csvio import atomic_write_csv, atomic_write_json
from ..score.stats import bootstrap_ci
from .select import rule_figures, test_like


def leaderboard(per_row: pd.DataFrame, baseline: str, speeds: dict[str, float | None], seed: int = 1234,
                select: list[str] | None = None) -> pd.DataFrame:
    """per_row: columns method, id, source, scs. One line per method, best by the selection rule first
    (`select`: the folds that choose, see select.py; None: every source)."""

    base = per_row[per_row.method == baseline].set_index("id")["scs"] if baseline in set(per_row.method) else None
    lines = []
    for m, g in per_row.groupby("method", sort=False):
        lo, hi = bootstrap_ci(g.scs.to_numpy(), seed=seed)
        line = {"method": m, "rows": len(g), "scs": g.scs.mean(), "ci_low": lo, "ci_high": hi}
        for s, gs in g.groupby("source", sort=True):
            line[f"scs[{s}]"] = gs.scs.mean()
        if base is not None:
            d = g.set_index("id")["scs"] - base.reindex(g.id).to_numpy()
            line["gain_vs_mean"] = d.mean()
            line["gain_ci_low"], line["gain_ci_high"] = bootstrap_ci(d.to_numpy(), seed=seed)
            for s, gs in g.groupby("source", sort=True):
                line[f"gain[{s}]"] = (gs.set_index("id")["scs"] - base.reindex(gs.id).to_numpy()).mean()
        line["rows_per_s"] = speeds.get(m)
        if "pred" in g:  # answer length: how a policy drifts (e.g. DPO running to the token cap)
            line["chars"] = round(float(g["pred"].astype(str).str.len().mean()), 1)
        lines.append(line)
    lb = pd.DataFrame(lines)
    sel = select or sorted(per_row.source.unique())
    lb = lb.merge(rule_figures(per_row, sel, seed=seed), on="method")
    return lb.sort_values(["rule", "scs"], ascending=False).reset_index(drop=True)


def paired_steps(per_row: pd.DataFrame, names: list[str], seed: int = 1234) -> list[dict]:
    """Each --pred against the one before it, row by row (paired bootstrap): e.g. zero-shot -> SFT ->
    SFT+DPO, each step's own gain with its interval."""
    by = {m: g.set_index("id")["scs"] for m, g in per_row.groupby("method") if m in names}
    out = []
    for a, b in zip(names, names[1:]):
        d = (by[b] - by[a].reindex(by[b].index)).to_numpy()
        lo, hi = bootstrap_ci(d, seed=seed)
        out.append({"from": a, "to": b, "rows": len(d), "gain": round(float(d.mean()), 4),
                    "ci_low": round(lo, 4), "ci_high": round(hi, 4)})
    return out


def format_steps(steps: list[dict]) -> str:
    return "\n".join(["paired steps (each --pred vs the one before it, bootstrap over rows):"] +
                     [f"  {s['from']:>14} -> {s['to']:<14} {s['gain']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]"
                      for s in steps])


def format_leaderboard(lb: pd.DataFrame, title: str, select: list[str] | None = None) -> str:
    sources = [c[4:-1] for c in lb.columns if c.startswith("scs[")]
    select = select or sources
    # the rule's folds first, marked *; the others are robustness columns
    sources = [s for s in sources if s in select] + [s for s in sources if s not in select]
    head = f"{'method':<16} {'RULE':>7} {'95% CI':>17} {'worst*':>7} {'macro':>7} {'SCS':>7} " \
        + " ".join(f"{(s + ('*' if s in select else ''))[:18]:>18}" for s in sources) \
        + f" {'gain vs mean [95% CI]':>26} {'rows/s':>8} {'chars':>6}"
    out = [title, head, "-" * len(head)]
    for _, r in lb.iterrows():
        rule = f"{r['rule']:7.4f} [{r['rule_low']:.4f}, {r['rule_high']:.4f}] {r['worst']:7.4f} {r['macro']:7.4f}" \
            if pd.notna(r.get("rule")) else f"{'-':>7} {'-':>17} {'-':>7} {r.get('macro', float('nan')):7.4f}"
        per = " ".join(f"{r[f'scs[{s}]']:>8.4f} ({r.get(f'gain[{s}]', float('nan')):+.3f})" if pd.notna(r[f"scs[{s}]"])
                       else f"{'-':>18}" for s in sources)  # not scored there (an adapter that trained on it)
        rate = f"{r['rows_per_s']:8.1f}" if pd.notna(r.get("rows_per_s")) else f"{'-':>8}"
        gain = f"{r.get('gain_vs_mean', float('nan')):+.4f} [{r.get('gain_ci_low', float('nan')):+.4f}, " \
               f"{r.get('gain_ci_high', float('nan')):+.4f}]"
        chars = f"{r['chars']:6.0f}" if pd.notna(r.get("chars")) else f"{'-':>6}"
        out.append(f"{r['method']:<16} {rule} {r['scs']:7.4f} {per} {gain:>26} {rate} {chars}")
    what = f"SCS on the test-like fold {select[0]}, the other starred folds guard (no loss to the mean prompt)" \
        if test_like(select) else "macro SCS over the selection folds"
    out.append(f"RULE = {what} (* = {', '.join(select)}), bootstrap 95% CI; worst* = the worst starred fold; "
               "macro = over all folds; SCS = all rows pooled. Unstarred folds: robustness, never read by the rule")
    missing = lb[lb.get("guards_missing", pd.Series("", index=lb.index)).fillna("") != ""] if len(lb) else lb
    for _, r in missing.iterrows():
        out.append(f"  {r['method']}: not scored on {r['guards_missing']} (a twin trained there, or a fold this run did not hold out): "
                   + ("guarded on the other starred folds only" if pd.notna(r["rule"]) else "no RULE, never picked"))
    out.append("per-source cells: SCS (gain over the mean prompt fitted on the same training rows)")
    if lb.rule.isna().any():
        out.append("- = not scored on that fold (an adapter that trained on it): no RULE, never picked; ranked with "
                   "the others on the selection folds all methods share (below)")
    if "mean:shipped" in set(lb.method) or lb.method.str.startswith("ref:").any():
        out.append("mean:shipped (the package's current default.json) and ref:* (fixed prompt files) were fitted "
                   "outside these folds: references, not held-out figures")
    return "\n".join(out)


def _ref(method: str) -> bool:
    return method == "mean:shipped" or method.startswith("ref:")


def write_report(out: Path, lb: pd.DataFrame, per_row: pd.DataFrame, meta: dict, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "leaderboard.csv", lb)
    atomic_write_csv(out / "per_row.csv", per_row)
    atomic_write_json(out / "leaderboard.json", {**meta, "leaderboard": lb.to_dict(orient="records")})
    import matplotlib  # matplotlib: heavy, only for plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(lb)))
    y = np.arange(len(lb))[::-1]
    # a reference that has seen every row is drawn hatched, never like a held-out figure
    ax.barh(y, lb.scs, color=["#bbbbbb" if _ref(m) else "#4477aa" for m in lb.method],
            hatch=["//" if _ref(m) else "" for m in lb.method])
    ax.errorbar(lb.scs, y, xerr=[lb.scs - lb.ci_low, lb.ci_high - lb.scs], fmt="none", ecolor="black", capsize=3)
    ax.set_yticks(y, lb.method)
    ax.set_xlabel("mean SCS (bootstrap 95% CI)")
    ax.set_title(title.replace(", PROXY", "\nPROXY"), fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "leaderboard.png", dpi=110)
    plt.close(fig)
