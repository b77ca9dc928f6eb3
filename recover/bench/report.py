"""Run the bench, print the side-by-side table, the ratio and the T4 projection; write JSON + PNG."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import constants as C
from ..cpus import usable_cpus
from ..csvio import atomic_write_json
from ..demo import SAMPLE
from ..meanprompt.prompt import MeanPrompt
from ..models.serving import default_cpu_quant
from ..runs import new_run_dir, record_run
from ..score.embedder import Embedder
from ..score.scoring import score_texts
from ..score.stats import bootstrap_ci
from .. import projection as P
from .choose import choose_for_machine, format_choice
from .limits import format_limits, measure_limits, phase_fractions, slow_precisions
from .measure import BACKENDS, ENGINES, NATIVE, PEERS, run_backend

PROJECT_MODELS = ("Phi-2 Q4_K_M", "Mistral-7B Q4_K_M")
# paired SCS baselines: the packaged file on llama.cpp, and the bf16 torch engine (what a new torch variant replaces)
PAIRED_BASES = ("llama", "torch")


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
    choose_cpu_quant: bool = False  # choose this machine's CPU engine (bench/choose.py) into its own cache
    quality_data: str | None = None  # the held-out Gemma fold the choice's quality check runs on
    quality_rows: int = C.QUALITY_MIN_ROWS
    ship_class_rule: bool = False  # also record the choice as the packaged rule of this CPU's feature class
    all_precisions: bool = False  # run bf16 / int8 backends even where this CPU multiplies them far slower than fp32

    def __post_init__(self):
        bad = [b for b in self.backends if b.split(":")[0] not in BACKENDS]
        if bad:
            raise ValueError(f"--backends: unknown {', '.join(bad)}; choose from {', '.join(BACKENDS)}")
        if self.rows < 1:
            raise ValueError("--rows must be >= 1")
        hf = [b for b in self.backends if b.startswith("hf")]
        unequal = [k for k in ("lora_path", "prefixes") if self.llm.get(k)]
        if hf and unequal:  # the hf backends load the base alone: "equal work" would not be equal
            raise ValueError(f"--{unequal[0].replace('_path', '').replace('prefixes', 'prefix')}: the {hf[0]} backend "
                             "cannot apply it; bench llama backends only (--backends llama,llama:Q8_0)")
        if self.choose_cpu_quant and not (self.quality_data and Path(self.quality_data).is_file()):
            raise ValueError("--choose-cpu-quant: give --quality-data, a held-out Gemma fold with rewrite_prompt")
        if self.choose_cpu_quant and self.quality_rows < C.QUALITY_MIN_ROWS:
            raise ValueError(f"--quality-rows: at least {C.QUALITY_MIN_ROWS} (issue 40's eligibility rule)")
        if not Path(self.model).is_file():
            raise FileNotFoundError(f"--model {self.model}: file not found")


def run_bench(cfg: BenchConfig, log=print) -> dict:
    data = cfg.data or str(SAMPLE)
    run_dir = new_run_dir(Path(cfg.out) / "runs", "bench")
    record_run(run_dir, cfg, None)
    # llama backends first: the equal-work hf backend runs on the engine's own prompt token ids
    order = sorted(cfg.backends, key=lambda b: not b.startswith("llama"))
    limits = measure_limits(usable_cpus())  # first: a precision this CPU only emulates is not worth an hour
    skip = {} if cfg.all_precisions else slow_precisions(order, limits)
    results, ids = {}, None
    for b in order:  # one at a time: two backends on the same cores would slow each other many times
        if b in skip:
            log(f"bench: {b} {skip[b]}")
            results[b] = {"error": skip[b], "skipped": True}
            continue
        log(f"bench: {b} on {cfg.rows} rows ...")
        results[b] = run_backend(b, cfg.model, data, cfg.rows, cfg.llm, cfg.hf_dir, ids, str(Path(cfg.out) / "cache"))
        if ids is None and "prompt_ids" in results[b]:
            ids = results[b]["prompt_ids"]
    for r in results.values():
        r.pop("prompt_ids", None)
    calibration = P.load_calibration(cfg.calibrate) if cfg.calibrate else None
    report = {"model": cfg.model, "data": data, "rows": cfg.rows, "machine": "local (measured)",
              "threads": usable_cpus(), "backends": results, "limits": limits}
    for r in results.values():
        if "error" not in r:
            r["phases"] = phase_fractions(r, report["limits"])
    ok = {k: v for k, v in results.items() if "error" not in v}
    llamas = [k for k in ok if k.startswith("llama") and k.split(":")[0] != NATIVE]  # recover's own llama.cpp
    engines = [k for k in ok if k.split(":")[0] in ENGINES]
    equal = [k for k in ok if (k.split(":")[0] in PEERS and k != "hf-raw") or k.split(":")[0] == NATIVE]
    if llamas and equal:  # same ids, row by row, or the equal-work ratio means nothing
        ref = ok[llamas[0]]["prompt_token_counts"]
        for k in equal + [e for e in engines if e.startswith("torch")]:
            if ok[k]["prompt_token_counts"] != ref:
                raise RuntimeError(f"bench: {k} and llama saw different prompt token counts; the equal-work ratio is void")
        report["prompt_tokens_match"] = True
    report["ratios"] = {k: {"raw": _ratio(ok, "hf-raw", k), "equal_work": _ratio(ok, "hf", k)} for k in llamas}
    scs, per_row_scs = _scs(data, cfg.rows, ok)
    if scs:
        report["proxy_scs"] = scs
    if cfg.choose_cpu_quant:
        report["cpu_quant"] = choose_for_machine(report, cfg, log)
    report["headline"] = headline(report, equal, per_row_scs)
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


def _ratio(ok: dict, hf: str, llama: str) -> float | None:
    """How many times faster the engine is than HF on the same rows (s/row ratio)."""
    return round(ok[hf]["s_per_row"] / ok[llama]["s_per_row"], 3) if hf in ok and llama in ok else None


def _scs(data: str, rows: int, ok: dict) -> tuple[dict, dict]:
    """PROXY SCS of each backend's cleaned predictions, when the bench rows carry the true prompt
    -> (the summary, per-row scores by backend)."""
    df = pd.read_csv(data, keep_default_na=False).head(rows)
    if C.COL_PROMPT not in df or not ok:
        return {}, {}

    emb, truth, mean = Embedder.resolve(None), list(df[C.COL_PROMPT]), MeanPrompt.load().prompt
    # an empty answer is submitted as the mean prompt (`--combine llm`), and scored so
    per = {k: score_texts([p or mean for p in v["predictions"]], truth, emb) for k, v in ok.items()}
    # a label, not this machine's path (the file ships)
    out = {"embedder": f"PROXY {C.PROXY_MODEL_NAME}" if emb.spec.is_proxy else f"sentence-t5 layout: {emb.spec.path.name}", "rows": len(truth), "mean": {k: round(float(v.mean()), 4) for k, v in per.items()}}
    # paired, row by row: does a requant (or HF) lose anything against the packaged file on llama.cpp, and does
    # a torch variant lose anything against the bf16 torch engine (the CPU engine it would replace)?
    for base in PAIRED_BASES:
        if base in per:
            out[f"diff_vs_{base}"] = {k: {"mean": round(float((v - per[base]).mean()), 4),
                                          "ci95": [round(x, 4) for x in bootstrap_ci(v - per[base])]}
                                      for k, v in per.items() if k != base}
    return out, per


def headline(report: dict, peers: list[str], per_row_scs: dict | None = None) -> dict | None:
    """The ratio that matters: the CPU default (what `recover predict` runs here: the backend just chosen,
    else this machine's choice) against the FASTEST equal-work peer, by measured s/row; with the paired SCS
    of the two and each one's fraction of the machine's limits."""
    ok = {k: v for k, v in report["backends"].items() if "error" not in v}
    choice = report.get("cpu_quant") or default_cpu_quant() or {}
    # the choice names a torch backend by its precision and rows in flight: "torch-fp32" with n_seq 32 ran, in
    # the bench that chose it, as "torch-fp32:32"
    named = [n for n in (choice.get("backend"), f"{choice.get('backend')}:{choice.get('n_seq')}") if n in ok]
    chosen = named[0] if named else choice.get("backend")
    default = chosen if chosen in ok else next((k for k in ok if k == "llama"), None)
    peers = [p for p in peers if p in ok]
    if not default or not peers:
        return None
    best = min(peers, key=lambda k: ok[k]["s_per_row"])
    d, b = ok[default], ok[best]
    h = {"default": default, "source": choice.get("source", "chosen by this run") if chosen == default else "no choice",
         "best_peer": best, "speedup": round(b["s_per_row"] / d["s_per_row"], 3),
         "default_s_per_row": d["s_per_row"], "peer_s_per_row": b["s_per_row"],
         "prompt_tok_s": [d.get("prompt_tok_s"), b.get("prompt_tok_s")], "gen_tok_s": [d.get("gen_tok_s"), b.get("gen_tok_s")],
         "of_limit": {k: [x.get("phases", {}).get(k) for x in (d, b)] for k in ("prompt_of_limit", "gen_of_limit", "gen_kv_of_limit", "gen_flop_of_limit")}}
    if per_row_scs and default in per_row_scs and best in per_row_scs:
        diff = per_row_scs[default] - per_row_scs[best]
        h["scs_vs_peer"] = {"mean": round(float(diff.mean()), 4), "ci95": [round(x, 4) for x in bootstrap_ci(diff)]}
    return h


def format_report(r: dict) -> str:
    keys = ("load_s", "prompt_tokens_per_row", "prompt_tokens_evaluated_per_row", "gen_tokens_per_row",
            "prompt_tok_s", "gen_tok_s", "prompt_s_per_row", "gen_s_per_row", "s_per_row", "rows_per_s", "peak_rss_mb")
    lines = [f"MEASURED on this machine: {r['rows']} rows of {r['data']}", f"model: {r['model']}"]
    h = r.get("headline")
    if h:
        lines.append(f"CPU default {h['default']} vs the best peer {h['best_peer']} (equal work): {h['speedup']:.2f}x "
                     f"({h['default_s_per_row']} vs {h['peer_s_per_row']} s/row; prompt tok/s {h['prompt_tok_s'][0]} vs "
                     f"{h['prompt_tok_s'][1]}, generation tok/s {h['gen_tok_s'][0]} vs {h['gen_tok_s'][1]})")
        pct = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        fr = h.get("of_limit", {})
        lines.append(f"  of this CPU's limits: prompt {' vs '.join(pct(v) for v in fr.get('prompt_of_limit', []))}, "
                     f"decode {' vs '.join(pct(v) for v in fr.get('gen_of_limit', []))} of the read bandwidth "
                     f"(weights; with each row's KV cache {' vs '.join(pct(v) for v in fr.get('gen_kv_of_limit', []))}), "
                     f"{' vs '.join(pct(v) for v in fr.get('gen_flop_of_limit', []))} of the GEMM; "
                     f"default from: {h.get('source')}")
        if "scs_vs_peer" in h:
            sp = h["scs_vs_peer"]
            lines.append(f"  paired PROXY SCS {h['default']} - {h['best_peer']}: {sp['mean']:+.4f} "
                         f"[{sp['ci95'][0]:+.4f}, {sp['ci95'][1]:+.4f}]")
    names = [n for n, b in r["backends"].items() if "error" not in b]
    lines += [f"{n}: {b['error']}" for n, b in r["backends"].items() if "error" in b]  # one line each, not a column
    lines.append(f"{'':24}" + "".join(f"{n:>16}" for n in names))
    lines.append(f"{'model file':24}" + "".join(f"{r['backends'][n].get('model_file', '-')[-15:]:>16}" for n in names))
    for k in keys:
        lines.append(f"{k:24}" + "".join(f"{str(r['backends'][n].get(k, '-')):>16}" for n in names))
    lines.append(f"{'threads':24}{r.get('threads', '-'):>16}")
    lines += format_limits(r)
    if r.get("prompt_tokens_match"):
        lines.append("equal-work backends ran on the llama engine's prompt token ids: counts match on every row")
    for k, v in r.get("ratios", {}).items():
        f = lambda x: f"{x:.2f}x" if x is not None else "-"  # noqa: E731
        lines.append(f"speed {k} over hf fp32: raw {f(v['raw'])} (hf-raw: no stop rule), "
                     f"equal work {f(v['equal_work'])} (same ids, same stops)")
    if "proxy_scs" in r:
        sc = r["proxy_scs"]
        lines.append(f"PROXY SCS ({sc['embedder']}, {sc['rows']} rows): "
                     + ", ".join(f"{k} {v}" for k, v in sc["mean"].items()))
        for base in PAIRED_BASES:
            for k, d in sc.get(f"diff_vs_{base}", {}).items():
                lines.append(f"  {k} - {base}: {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]")
    if "cpu_quant" in r:
        lines += format_choice(r["cpu_quant"])
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
    import matplotlib  # matplotlib: heavy, only for plots

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
