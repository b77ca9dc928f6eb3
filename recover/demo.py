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
    """The embedded default: the best CPU predictor that ships inside the package."""
    from .predict.embed import default_artifact

    art = default_artifact()
    if art is not None:
        return PredictConfig(inp, out, predictor="embed", model=str(art), **kw)
    return PredictConfig(inp, out, predictor="mean", **kw)


def run_demo(out_dir: str | None = None, embedder: str | None = None) -> dict:
    out = Path(out_dir or tempfile.mkdtemp(prefix="recover-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    full = read_table(SAMPLE, C.TEST_COLUMNS + (C.COL_PROMPT,))
    test, truth = out / "test.csv", out / "truth.csv"
    atomic_write_csv(test, full[list(C.TEST_COLUMNS)])
    atomic_write_csv(truth, full[[C.COL_ID, C.COL_PROMPT]])
    emb = Embedder.resolve(embedder)
    rows = []
    configs = [("mean prompt (shipped constant)", PredictConfig(str(test), str(out / "sub_mean.csv"), embedder=embedder))]
    default = default_predictor_config(str(test), str(out / "submission.csv"), embedder=embedder)
    if default.predictor != "mean":
        configs.append((f"{default.predictor} predictor (embedded default)", default))
    for name, cfg in configs:
        stats = run_predict(cfg)
        name = f"{name}, combine {stats['combine']}" if cfg.predictor != "mean" else name
        res = run_score(cfg.output, truth, emb, report=str(out / f"report_{cfg.predictor}"))
        rows.append((name, res.score))
    tag = "PROXY SCS (all-MiniLM-L6-v2 stands in for sentence-t5-base)" if emb.spec.is_proxy else "SCS (sentence-t5-base)"
    print()
    print(format_table(rows, f"recover demo: {len(full)} built-in sample rows, {tag}"))
    print(emb.spec.describe())
    print(f"outputs: {out}")
    return {"scores": dict(rows), "embedder": str(emb.spec.path), "proxy": emb.spec.is_proxy, "out": str(out)}
