"""`make demo`: predict on the built-in sample with the embedded default, score, print the table."""
from __future__ import annotations

import tempfile
from pathlib import Path

from . import constants as C
from .csvio import atomic_write_csv, read_table
from .predict.runner import PredictConfig, run_predict
from .score.embedder import Embedder
from .score.scoring import format_table, run_score

SAMPLE = Path(__file__).resolve().parent / "sample" / "sample.csv"


def default_predictor_config(inp: str, out: str, **kw) -> PredictConfig:
    """The ONE default (recover/assets/default_predictor.json): what `recover predict` runs with no flags."""
    from .predict.defaults import resolve_predictor

    predictor, model, ensemble = resolve_predictor(None, None)
    return PredictConfig(inp, out, predictor=predictor, model=model, ensemble=ensemble, **kw)


def loso_lines(choice: dict) -> str:
    """The default's held-out figures: the Gemma folds that chose it first (*), then the robustness folds."""
    loso = choice.get("loso", {})
    mine, mean = loso.get(choice.get("method", ""), {}), loso.get("mean", {})
    rule = mine.get("rule", {})
    folds = rule.get("folds", [])
    out = []
    if rule:
        out.append(f"  selection rule: {rule['name']}: {rule['macro']:.4f} [{rule['ci95'][0]:.4f}, {rule['ci95'][1]:.4f}] "
                   f"over {', '.join(folds)} (mean prompt {mean.get('rule', {}).get('macro', float('nan')):.4f})")
    order = [s for s in mine.get("scs", {}) if s in folds] + [s for s in mine.get("scs", {}) if s not in folds]
    for src in order:
        tag = "*" if src in folds else " (robustness)"
        out.append(f"  leave-one-source-out, held out {src}{tag}: {mine['scs'][src]:.4f} "
                   f"(mean prompt {mean.get('scs', {}).get(src, float('nan')):.4f})")
    return "\n".join(out)


def run_demo(out_dir: str | None = None, embedder: str | None = None) -> dict:
    out = Path(out_dir or tempfile.mkdtemp(prefix="recover-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    full = read_table(SAMPLE, C.TEST_COLUMNS + (C.COL_PROMPT,))
    test, truth = out / "test.csv", out / "truth.csv"
    atomic_write_csv(test, full[list(C.TEST_COLUMNS)])
    atomic_write_csv(truth, full[[C.COL_ID, C.COL_PROMPT]])
    emb = Embedder.resolve(embedder)
    rows = []
    from .predict.defaults import default_choice

    choice = default_choice()
    configs = [("mean prompt (shipped constant)", PredictConfig(str(test), str(out / "sub_mean.csv"), embedder=embedder))]
    default = default_predictor_config(str(test), str(out / "submission.csv"), embedder=embedder)
    if default.predictor != "mean":
        configs.append((f"{choice.get('method', default.predictor)} (DEFAULT)", default))
    else:
        configs[0] = ("mean prompt (DEFAULT)", configs[0][1])
    for name, cfg in configs:
        run_predict(cfg)
        res = run_score(cfg.output, truth, emb, report=str(out / f"report_{cfg.predictor}"))
        rows.append((name, res.score))
    tag = "PROXY SCS (all-MiniLM-L6-v2 stands in for sentence-t5-base)" if emb.spec.is_proxy else "SCS (sentence-t5-base)"
    print()
    print(format_table(rows, f"recover demo: {len(full)} built-in sample rows, {tag}"))
    print(f"DEFAULT = what `recover predict` runs with no flags: {choice.get('why', '')}")
    print(loso_lines(choice))
    print(emb.spec.describe())
    print(f"outputs: {out}")
    return {"scores": dict(rows), "embedder": str(emb.spec.path), "proxy": emb.spec.is_proxy, "out": str(out)}
