"""`recover bench --choose-cpu-quant`: the engine and precision for THIS machine, written to its own cache.

Speed: the s/row of each of recover's engines in the bench just run (same rows, one process at a time).
Quality (issue 40): a precision is ELIGIBLE only if its paired proxy SCS against torch fp32 (the reference,
eligible by definition) on >= C.QUALITY_MIN_ROWS rows of a held-out Gemma fold holds 0 (the 95% bootstrap
interval is not wholly below 0) for the bare base AND for the served adapter (C.DEFAULT_LORA). Only backends
faster than fp32 are checked: a slower one could not be chosen. The choice: the fastest eligible backend.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from .. import constants as C
from ..meanprompt.prompt import MeanPrompt
from ..models.cpu_choice import read_cpu_features, write_class_rule, write_measured_choice
from ..models.shipped import lora_manifest, resolve_lora
from ..score.embedder import Embedder
from ..score.scoring import score_texts
from ..score.stats import bootstrap_ci
from .measure import ENGINES, run_backend

REFERENCE = "torch-fp32"
LORAS = (C.NO_LORA, C.DEFAULT_LORA)  # the bare base and the adapter served by default


def is_ref(backend: str) -> bool:
    return backend.split(":")[0] == REFERENCE  # torch-fp32, at any rows in flight


def reference(speed: dict) -> str:
    refs = [k for k in speed if is_ref(k)]
    if not refs:
        raise ValueError(f"--choose-cpu-quant: the bench must include {REFERENCE} (the reference precision)")
    return min(refs, key=lambda k: speed[k]["s_per_row"])


def candidates(speed: dict) -> list[str]:
    """Engines faster than the fp32 reference, fastest first: the only ones the rule could choose."""
    ref = speed[reference(speed)]["s_per_row"]
    return sorted((k for k, v in speed.items() if not is_ref(k) and v["s_per_row"] < ref),
                  key=lambda k: speed[k]["s_per_row"])


def eligible(quality: dict) -> dict[str, bool]:
    """backend -> whether its paired SCS vs fp32 holds 0 on enough rows for every served adapter setting."""
    ref = next((k for t in quality.get("by_lora", {}).values() for k in t if is_ref(k)), REFERENCE)
    out: dict[str, bool] = {ref: True}
    for lora, table in quality.get("by_lora", {}).items():
        for k, d in table.items():
            if is_ref(k):
                continue
            ok = quality.get("rows", 0) >= C.QUALITY_MIN_ROWS and "diff_vs_fp32" in d and d["diff_vs_fp32"]["ci95"][1] >= 0
            out[k] = out.get(k, True) and ok
    missing = set(quality.get("by_lora", {})) ^ set(LORAS)
    if missing:  # checked on one setting only: nothing but the reference is eligible
        return {ref: True}
    return out


def choose(speed: dict, quality: dict) -> dict:
    """The fastest eligible engine. speed: backend -> {"s_per_row", "n_seq", "torch_dtype"} measured here."""
    ok = eligible(quality)
    keep = [k for k in speed if ok.get(k) or k == reference(speed)]
    best = min(keep, key=lambda k: speed[k]["s_per_row"])
    llamas = [k for k in keep if k.startswith("llama")]
    quant_from = min(llamas, key=lambda k: speed[k]["s_per_row"]) if llamas else None
    # a torch backend is recorded by its precision ("torch:32" -> "torch", n_seq 32): `recover bench` runs "torch" with
    # this machine's n_seq, so the headline finds the chosen backend among its defaults
    name = best.split(":")[0] if best.startswith("torch") else best
    return {"backend": name, "engine": "torch" if best.startswith("torch") else "llama",
            "torch_dtype": speed[best].get("torch_dtype"), "n_seq": speed[best].get("n_seq", 1),
            "quant": quant_from.split(":", 1)[1] if quant_from and ":" in quant_from else None,
            "s_per_row": {k: v["s_per_row"] for k, v in speed.items()}, "eligible": ok, "quality": quality}


def held_out_adapter(lora: str, data: str) -> str:
    """The adapter checked on `data`: the served one, or, where it trained on that source (a final fit trains on
    every source), the LOSO twin its manifest names (same recipe, never saw it): the check stays on held-out rows."""
    def trained_on(m: dict) -> set[str]:
        return {Path(d).stem for d in m.get("training", {}).get("data", [])}

    m = lora_manifest(lora)[1]
    if Path(data).stem not in trained_on(m):
        return lora
    twin = (m.get("heldout_figures", {}).get("from_adapter") or {}).get("name")
    if not twin or Path(data).stem in trained_on(lora_manifest(twin)[1]):
        raise ValueError(f"--quality-data {Path(data).name}: {lora} trained on it and names no LOSO twin that did not; "
                         "pass a fold it held out")
    return twin


def quality_check(model: str, data: str, rows: int, ref: str, backends: list[str], llm: dict, cache: str,
                  log=print) -> dict:
    """Each backend and the fp32 reference on `rows` held-out rows, bare and with the served adapter: proxy SCS,
    paired differences vs fp32 with 95% bootstrap intervals."""
    by_lora, adapters = {}, {}
    for lora in LORAS:
        opts = dict(llm)
        checked = lora
        if lora != C.NO_LORA:
            checked = adapters[lora] = held_out_adapter(lora, data)
            path, serve = resolve_lora(checked)
            opts = {**serve, **opts, "lora_path": path}
        preds = {}
        for b in [ref, *backends]:
            log(f"choose: {b} ({'bare base' if lora == C.NO_LORA else checked}) on {rows} rows of {Path(data).name} ...")
            r = run_backend(b, model, data, rows, {k: v for k, v in opts.items() if v is not None}, cache_dir=cache)
            if "error" in r:
                raise RuntimeError(f"--choose-cpu-quant: {b} failed: {r['error']}")
            preds[b] = r["predictions"]
        by_lora[lora] = paired_vs_reference(data, rows, preds, ref)
    return {"data": Path(data).name, "rows": rows, "embedder": f"PROXY {C.PROXY_MODEL_NAME}", "by_lora": by_lora,
            "adapter_checked": adapters}


def paired_vs_reference(data: str, rows: int, preds: dict[str, list[str]], ref: str) -> dict:
    truth = list(pd.read_csv(data, keep_default_na=False).head(rows)[C.COL_PROMPT])
    emb, mean = Embedder.resolve(None), MeanPrompt.load().prompt
    per = {k: score_texts([p or mean for p in v], truth, emb) for k, v in preds.items()}
    out = {}
    for k, v in per.items():
        out[k] = {"mean": round(float(v.mean()), 4)}
        if k != ref:
            d = v - per[ref]
            out[k]["diff_vs_fp32"] = {"mean": round(float(d.mean()), 4), "ci95": [round(x, 4) for x in bootstrap_ci(d)],
                                      "same_answer": sum(a == b for a, b in zip(preds[k], preds[ref]))}
    return out


def choose_for_machine(report: dict, cfg, log=print) -> dict:
    """Check the candidates, choose, write this machine's cache (and, asked, its class's packaged rule)."""
    speed = {k: {"s_per_row": v["s_per_row"], "n_seq": v.get("n_seq", 1), "torch_dtype": v.get("torch_dtype")}
             for k, v in report["backends"].items() if k.split(":")[0] in ENGINES and "error" not in v}
    cands = candidates(speed)
    if cands:
        quality = quality_check(cfg.model, cfg.quality_data, cfg.quality_rows, reference(speed), cands, cfg.llm,
                                str(Path(cfg.out) / "cache"), log)
    else:  # the reference is the fastest: eligible by definition, nothing to check it against
        quality = {"data": Path(cfg.quality_data).name, "rows": 0, "by_lora": {},
                   "skipped": f"no engine ran faster than {reference(speed)}"}
        log(f"choose: {quality['skipped']}: no quality runs needed")
    choice = {**choose(speed, quality), "rows": report["rows"], "data": Path(report["data"]).name,
              "threads": report["threads"], "limits": report.get("limits"),
              "command": "recover " + " ".join(sys.argv[1:])}
    feat = read_cpu_features()
    write_measured_choice(choice, feat, log)
    if cfg.ship_class_rule:
        write_class_rule(choice, feat, log=log)
    return choice


def format_choice(c: dict) -> list[str]:
    q = c["quality"]
    lines = [f"quality check (paired proxy SCS vs {REFERENCE}, {q['rows']} rows of {q['data']}; eligible if the "
             "95% interval is not wholly below 0 for every setting):" if "skipped" not in q else
             f"quality check: none ({q['skipped']}; {REFERENCE} is eligible by definition)"]
    for lora, t in q["by_lora"].items():
        checked = q.get("adapter_checked", {}).get(lora, lora)
        if checked != lora:
            lines.append(f"  {lora} trained on {q['data']}: checked with its LOSO twin {checked} (same recipe, held it out)")
        for k, d in t.items():
            diff = d.get("diff_vs_fp32")
            lines.append(f"  {checked:16} {k:14} {d['mean']:.4f}" + (
                f"  {diff['mean']:+.4f} [{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}], same answer "
                f"{diff['same_answer']}/{q['rows']}" if diff else "  (reference)"))
    lines.append("eligible: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in c["eligible"].items()))
    lines.append(f"chosen for this machine: {c['backend']} ({c['n_seq']} rows in flight)")
    return lines
