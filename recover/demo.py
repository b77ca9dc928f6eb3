"""`make demo`: predict on the built-in sample with the embedded default, score, print the table; beside it the
LLM adapter alone and the Kaggle preset (on fewer rows: they are slower), each with its held-out figure on the
test-like fold, so a newcomer sees what each buys."""
from __future__ import annotations

import tempfile
from pathlib import Path

from . import constants as C
from .csvio import atomic_write_csv, read_table
from .predict.config import PredictConfig
from .predict.defaults import default_choice, predict_config, preset
from .predict.ensemble import EnsembleSpec
from .predict.runner import run_predict
from .score.embedder import Embedder
from .score.scoring import format_table, run_score

SAMPLE = Path(__file__).resolve().parent / "sample" / "sample.csv"
EXTRA_ROWS = 16  # the adapter and the Kaggle preset run on the first rows only (LLM answers take seconds a row)


def default_predictor_config(inp: str, out: str, **kw) -> PredictConfig:
    """The ONE default (recover/assets/default_predictor.json): what `recover predict` runs with no flags."""
    return predict_config(inp, out, **kw)


def loso_lines(choice: dict) -> str:
    """The default's held-out figures: the folds that chose it first (*), then the robustness folds."""
    loso = choice.get("loso", {})
    mine, mean = loso.get(choice.get("method", ""), {}), loso.get("mean", {})
    rule = mine.get("rule", {})
    folds = rule.get("folds", [])
    out = []
    if rule:
        figure = rule.get("figure", rule.get("macro"))
        out.append(f"  selection rule: {rule['name']}: {figure:.4f} [{rule['ci95'][0]:.4f}, {rule['ci95'][1]:.4f}] "
                   f"on {', '.join(folds)} (mean prompt {mean.get('rule', {}).get('figure', mean.get('rule', {}).get('macro', float('nan'))):.4f})")
    order = [s for s in mine.get("scs", {}) if s in folds] + [s for s in mine.get("scs", {}) if s not in folds]
    for src in order:
        tag = "*" if src in folds else " (robustness)"
        out.append(f"  leave-one-source-out, held out {src}{tag}: {_figure(mine['scs'][src])} "
                   f"(mean prompt {_figure(mean.get('scs', {}).get(src))})")
    return "\n".join(out)


def _figure(v: float | None) -> str:
    """A recorded figure; null (a fold the method trained on, so never held out) as '-'."""
    return "-" if v is None or v != v else f"{v:.4f}"


def test_like_figure(ensemble: str | None, method: str) -> float | None:
    """A method's held-out SCS on the test-like fold as an ensemble's manifest recorded it (m:NAME, ens*)."""
    if not ensemble:
        return None
    got = EnsembleSpec.load(ensemble).record.get("loso_scs", {}).get(method, {})
    return got.get(C.TEST_LIKE_SOURCE)


def contexts(choice: dict) -> list[tuple[str, dict, float | None]]:
    """(label, PredictConfig overrides, f figure) for the adapter alone and the Kaggle preset."""
    kaggle = preset("kaggle")
    spec = EnsembleSpec.load(kaggle["ensemble"])
    first_llm = next(m for m in spec.members if m.kind == "llm")
    joined = spec.record.get("chosen", "ens")
    out = [(f"LLM adapter alone ({first_llm.lora})", {"predictor": "llm", "model": first_llm.model,
                                                      "llm": {"lora_path": first_llm.lora}},
            test_like_figure(kaggle["ensemble"], f"m:{first_llm.name}"))]
    if kaggle["ensemble"] != choice.get("ensemble"):  # the same ensemble is not run twice
        out.append((f"Kaggle preset ({kaggle['ensemble']}: {spec.join} of {' + '.join(spec.order)})",
                    {"predictor": "ensemble", "ensemble": kaggle["ensemble"]}, test_like_figure(kaggle["ensemble"], joined)))
    return out


def run_demo(out_dir: str | None = None, embedder: str | None = None, extra_rows: int = EXTRA_ROWS) -> dict:
    out = Path(out_dir or tempfile.mkdtemp(prefix="recover-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    full = read_table(SAMPLE, C.TEST_COLUMNS + (C.COL_PROMPT,))
    test, truth, few = out / "test.csv", out / "truth.csv", out / f"test_{extra_rows}.csv"
    truth_few = out / f"truth_{extra_rows}.csv"
    atomic_write_csv(test, full[list(C.TEST_COLUMNS)])
    atomic_write_csv(few, full[list(C.TEST_COLUMNS)].head(extra_rows))
    atomic_write_csv(truth, full[[C.COL_ID, C.COL_PROMPT]])
    atomic_write_csv(truth_few, full[[C.COL_ID, C.COL_PROMPT]].head(extra_rows))
    emb = Embedder.resolve(embedder)
    choice = default_choice()
    default_f = test_like_figure(choice.get("ensemble"), choice.get("method", "")) if choice.get("ensemble") else \
        choice.get("loso", {}).get(choice.get("method", ""), {}).get("scs", {}).get(C.TEST_LIKE_SOURCE)
    mean_f = choice.get("loso", {}).get("mean", {}).get("scs", {}).get(C.TEST_LIKE_SOURCE)
    configs = [("mean prompt (shipped constant)", PredictConfig(str(test), str(out / "sub_mean.csv"), embedder=embedder),
                mean_f)]
    default = default_predictor_config(str(test), str(out / "submission.csv"), embedder=embedder)
    if default.predictor != "mean":
        same = " = the Kaggle preset" if choice.get("ensemble") and choice["ensemble"] == preset("kaggle")["ensemble"] else ""
        what = f"{choice['ensemble']}: {choice.get('method')}" if choice.get("ensemble") else choice.get("method", default.predictor)
        configs.append((f"{what} (DEFAULT{same})", default, default_f))
    else:
        configs[0] = ("mean prompt (DEFAULT)", configs[0][1], mean_f)
    for i, (label, over, f_fig) in enumerate(contexts(choice)):
        configs.append((f"{label}, first {extra_rows} rows",
                        PredictConfig(str(few), str(out / f"sub_context{i}.csv"), embedder=embedder, **over), f_fig))
    rows = []
    for name, cfg, f_fig in configs:
        run_predict(cfg)
        res = run_score(cfg.output, truth if cfg.input == str(test) else truth_few, emb, report=str(out / f"report_{Path(cfg.output).stem}"))
        f_txt = f"{f_fig:.4f}" if f_fig is not None else "   -  "
        rows.append((f"{name:<58} held out on {C.TEST_LIKE_SOURCE}: {f_txt} | this sample:", res.score))
    tag = "PROXY SCS (all-MiniLM-L6-v2 stands in for sentence-t5-base)" if emb.spec.is_proxy else "SCS (sentence-t5-base)"
    print()
    print(format_table(rows, f"recover demo: {len(full)} built-in sample rows, {tag}"))
    print(f"DEFAULT = what `recover predict` runs with no flags: {choice.get('why', '')}")
    print(loso_lines(choice))
    print(f"Kaggle preset = what the submission notebook serves (`recover predict --preset kaggle` runs it here): "
          f"{preset('kaggle').get('why', '')}")
    print(emb.spec.describe())
    print(f"outputs: {out}")
    return {"scores": {name.split(" held out")[0].strip(): s for name, s in rows}, "embedder": str(emb.spec.path),
            "proxy": emb.spec.is_proxy, "out": str(out)}
