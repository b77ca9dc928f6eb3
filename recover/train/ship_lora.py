"""`recover train chain --ship NAME`: the chain's SFT+DPO LoRA GGUF into recover/assets/lora/NAME."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path

from .. import constants as C
from ..csvio import atomic_write_json
from ..hashing import file_sha256
from ..models.shipped import ASSETS, lora_manifest
from .chain import STAGES, Chain, ChainConfig


SHIP_STAGES = ("dpo", "sft")  # which of the chain's adapters --ship copies (SFT+DPO by default)
_RUN_KEYS = ("data", "launcher", "out")  # this run's, not the recipe's: the manifest records the data by name


def ship_adapter(cfg: ChainConfig, name: str, command: str, log=print, loso_from: str | None = None,
                 stage: str = "dpo") -> Path:
    """Copy the SFT+DPO LoRA GGUF to recover/assets/lora/NAME with a manifest: base file hash, training
    data, held-out figures (from the eval stage) and the command that made it. A final fit (holdout none)
    has no eval of its own: `loso_from` names the LOSO adapter made with the same recipe whose held-out
    figures and --combine it carries (recorded as such)."""
    ch = Chain(cfg, log)
    if not ch.done("eval"):
        raise RuntimeError(f"--ship {name}: the chain in {cfg.root} has not finished its eval stage")
    if cfg.final != bool(loso_from):
        raise ValueError("--loso-from: needed by a final fit (holdout none), and only by one")
    if stage not in SHIP_STAGES:
        raise ValueError(f"--ship-stage {stage!r}: choose one of {', '.join(SHIP_STAGES)}")
    src = ch.p[f"{stage}_gguf"]
    export = json.loads(src.with_suffix(".manifest.json").read_text())
    stages = {s: json.loads((cfg.root / "stages" / f"{s}.json").read_text()) for s in STAGES if ch.done(s)}
    if cfg.final:
        held, combine, evidence = loso_evidence(cfg, loso_from)
    else:
        ev = json.loads((cfg.root / "stages" / "eval.json").read_text())
        combine, evidence = choose_combine(ev) if stage == "dpo" else ("llm", {
            "sft": next(round(r["scs"], 4) for r in ev["leaderboard"] if r["method"] == "sft"),
            "why": "the SFT adapter is served alone (the chain measures the mean prompt appended for SFT+DPO only)"})
        held = {"protocol": f"loso:{cfg.holdout}", "metric": "PROXY SCS (all-MiniLM-L6-v2)",
                "leaderboard": ev["leaderboard"], "paired_steps": ev.get("paired_steps", [])}
    dest = ASSETS / C.LORA_ASSETS_DIR / name
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest / f"{name}.gguf")
    manifest = {"format_version": C.LORA_FORMAT_VERSION, "kind": "lora_gguf", "name": name, "file": f"{name}.gguf",
                "sha256": file_sha256(dest / f"{name}.gguf"), "base": ch.base_gguf(), "base_file": export["base_file"],
                "base_sha256": export["base_sha256"], "llama_cpp_python": C.LLAMA_CPP_PYTHON_VERSION,
                "serve": cfg.serve(), "verification": export["verification"],
                "stage": stage,
                "training": {"data": [Path(p).name for p in cfg.data], "holdout": cfg.holdout,
                             "sft_rows": stages["rows"]["sft_rows"], "dpo_pairs": stages["pairs"]["pairs"],
                             "recipe": {k: v for k, v in asdict(cfg).items() if k not in _RUN_KEYS},
                             "seconds": {s: v["seconds"] for s, v in stages.items()}},
                "heldout_figures": held,
                "combine": combine, "combine_evidence": evidence, "command": command}
    atomic_write_json(dest / C.MANIFEST_FILE, manifest)
    log(f"shipped {dest / manifest['file']} ({(dest / manifest['file']).stat().st_size / 1e6:.1f} MB)")
    return dest


# recipe keys that may differ between a LOSO adapter and the final fit whose figures it stands for: the fold, and
# where rather than how (this run's data, launcher and folder, which the manifest's recipe leaves out; the Kaggle
# base's name)
_FOLD_KEYS = ("holdout", "eval_rows")
_WHERE_KEYS = _RUN_KEYS + ("kaggle_base",)


def loso_evidence(cfg: ChainConfig, loso_from: str) -> tuple[dict, str, dict]:
    """(held-out figures, combine, its evidence) of the LOSO adapter `loso_from`, if it was made with this
    recipe (all but the data and the held-out source)."""
    _, m = lora_manifest(loso_from)
    if "heldout_figures" not in m:
        raise ValueError(f"--loso-from {loso_from}: its manifest has no held-out figures")
    was = {k: v for k, v in m["training"]["recipe"].items() if k not in _FOLD_KEYS + _WHERE_KEYS}
    now = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in _FOLD_KEYS + _WHERE_KEYS}
    defaults = {f.name: f.default for f in fields(ChainConfig)}
    # a key added after the LOSO adapter was made, left at its default, is not a different recipe
    diff = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)
            and not (k not in was and now.get(k) == defaults.get(k))]
    if diff:
        what = ", ".join(f"{k}: {was.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(f"--loso-from {loso_from}: made with another recipe ({what})")
    held = {**m["heldout_figures"], "from_adapter": {"name": m.get("name", loso_from), "sha256": m.get("sha256"),
                                                     "data": m["training"]["data"], "holdout": m["training"]["holdout"],
                                                     "command": m.get("command")}}
    return held, m["combine"], {**m.get("combine_evidence", {}), "from_adapter": m.get("name", loso_from)}


def choose_combine(ev: dict) -> tuple[str, dict]:
    """`--combine` for this adapter, by the held-out figures: the model alone ("llm") or with the fold's
    mean prompt appended ("llm+mean"), whichever scored higher (the submission notebook reads it)."""
    scs = {r["method"]: r["scs"] for r in ev["leaderboard"]}
    step = next((s for s in ev.get("paired_steps", []) if s["from"] == "sft+dpo" and s["to"] == "sft+dpo+mean"), None)
    if "sft+dpo" not in scs or "sft+dpo+mean" not in scs:
        raise ValueError("the chain's eval has no sft+dpo / sft+dpo+mean rows: cannot choose --combine")
    return ("llm+mean" if scs["sft+dpo+mean"] > scs["sft+dpo"] else "llm"), {
        "sft+dpo": round(scs["sft+dpo"], 4), "sft+dpo+mean": round(scs["sft+dpo+mean"], 4), "paired_step": step}
