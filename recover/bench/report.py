"""Run the bench, print the side-by-side table, the ratio and the T4 projection; write JSON + PNG."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import constants as C
from ..csvio import atomic_write_json
from ..runs import new_run_dir, record_run
from . import projection as P
from .measure import BACKENDS, run_backend

PROJECT_MODELS = ("Phi-2 Q4_K_M", "Mistral-7B Q4_K_M")


@dataclass
class BenchConfig:
    model: str
    data: str | None = None  # default: the built-in sample
    rows: int = 20
    backends: list[str] = field(default_factory=lambda: list(BACKENDS))
    project_rows: int = C.KAGGLE_TEST_ROWS
    calibrate: str | None = None
    out: str = "build/bench"
    hf_dir: str | None = None
    llm: dict = field(default_factory=dict)

    def __post_init__(self):
        bad = [b for b in self.backends if b.split(":")[0] not in BACKENDS]
        if bad:
            raise ValueError(f"--backends: unknown {', '.join(bad)}; choose from {', '.join(BACKENDS)}")
        if self.rows < 1:
            raise ValueError("--rows must be >= 1")
        if not Path(self.model).is_file():
            raise FileNotFoundError(f"--model {self.model}: file not found")


def run_bench(cfg: BenchConfig, log=print) -> dict:
    from ..demo import SAMPLE

    data = cfg.data or str(SAMPLE)
    run_dir = new_run_dir(Path(cfg.out) / "runs", "bench")
    record_run(run_dir, cfg, None)
    results = {b: run_backend(b, cfg.model, data, cfg.rows, cfg.llm, cfg.hf_dir) for b in cfg.backends}
    calibration = P.load_calibration(cfg.calibrate) if cfg.calibrate else None
    report = {"model": cfg.model, "data": data, "rows": cfg.rows, "machine": "local (measured)", "backends": results}
    ok = {k: v for k, v in results.items() if "error" not in v}
    llamas = [k for k in ok if k.startswith("llama")]
    if llamas and "hf" in ok:
        report["ratio_rows_per_s_over_hf"] = {k: round(ok[k]["rows_per_s"] / ok["hf"]["rows_per_s"], 3) for k in llamas}
    if llamas:
        lm = ok[llamas[0]]
        pt, gt = lm["prompt_tokens_per_row"], lm["gen_tokens_per_row"]
        proj = [P.project(Path(cfg.model).name, lm["n_params"], lm["file_bytes"], pt, gt, cfg.project_rows, calibration)]
        proj += [P.project(n, p, b, pt, gt, cfg.project_rows, calibration) for n, p, b in P.MODEL_TABLE if n in PROJECT_MODELS]
        report["t4_projection"] = {"label": "PROJECTED (cost model, not measured)", "rows": cfg.project_rows,
                                   "models": proj, "largest_fitting": P.largest_fitting(pt, gt, cfg.project_rows, calibration),
                                   "cost_model": P.constants()}
    out = Path(cfg.out)
    atomic_write_json(out / "bench.json", report)
    atomic_write_json(run_dir / "bench.json", report)
    _plot(report, out / "bench.png")
    log(format_report(report))
    log(f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return report


def format_report(r: dict) -> str:
    keys = ("load_s", "prompt_tokens_per_row", "gen_tokens_per_row", "prompt_tok_s", "gen_tok_s", "s_per_row",
            "rows_per_s", "peak_rss_mb")
    lines = [f"MEASURED on this machine: {r['rows']} rows of {r['data']}", f"model: {r['model']}"]
    names = list(r["backends"])
    lines.append(f"{'':24}" + "".join(f"{n:>16}" for n in names))
    lines.append(f"{'model file':24}" + "".join(f"{r['backends'][n].get('model_file', '-')[-15:]:>16}" for n in names))
    for k in keys:
        lines.append(f"{k:24}" + "".join(f"{str(r['backends'][n].get(k, r['backends'][n].get('error', '-'))):>16}"
                                          for n in names))
    for k, v in r.get("ratio_rows_per_s_over_hf", {}).items():
        lines.append(f"ratio rows/s {k} / hf: {v:.2f}x")
    if "t4_projection" in r:
        t = r["t4_projection"]
        lines.append(f"\nKaggle T4 {t['label']}: {t['rows']} rows, wheels + load + predict, limit 9 h")
        lines.append(f"{'model':28}{'prompt tok/s':>13}{'gen tok/s':>10}{'s/row':>8}{'total h':>9}{'margin h':>10}")
        for m in t["models"]:
            lines.append(f"{m['model'][:28]:28}{m['prompt_tok_s']:>13}{m['gen_tok_s']:>10}{m['s_per_row']:>8}"
                         f"{m['total_h']:>9}{m['margin_h']:>10}")
        lf = t["largest_fitting"]
        lines.append(f"largest model in the table that fits: {lf['model'] if lf else 'none'}"
                     + (f" (projected {lf['total_h']} h)" if lf else ""))
    return "\n".join(lines)


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, b in r["backends"].items():
        if "per_row_s" in b:
            axes[0].plot(b["per_row_s"], marker=".", label=f"{name}: {b['s_per_row']} s/row")
    axes[0].set(title="measured per-row time (this machine)", xlabel="row", ylabel="seconds")
    axes[0].legend()
    if "t4_projection" in r:
        ms = r["t4_projection"]["models"]
        axes[1].barh([m["model"] for m in ms], [m["total_h"] for m in ms], color="#4477aa")
        axes[1].axvline(9, color="#cc3311", label="9 h limit")
        axes[1].set(title=f"PROJECTED Kaggle T4 hours, {r['t4_projection']['rows']} rows", xlabel="hours")
        axes[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
