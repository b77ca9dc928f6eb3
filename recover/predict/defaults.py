"""The ONE default predictor, used by `recover predict` with no flags, `make demo` and the notebook.

`recover/assets/default_predictor.json` names it and records why (its leave-one-source-out figures
and the command that produced them). It is written by `recover eval --ship` and nowhere else.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from .. import constants as C
from ..cpus import cpu_has_fast_bf16

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_FILE = ASSETS / C.DEFAULT_PREDICTOR_FILE


def default_choice() -> dict:
    """{"predictor": "ensemble"|"embed"|"mean", "model": path or None, "ensemble": name or None, "why": ...};
    the mean prompt if nothing is shipped."""
    if not DEFAULT_FILE.is_file():
        return {"predictor": "mean", "model": None, "ensemble": None, "why": "no default_predictor.json shipped"}
    d = json.loads(DEFAULT_FILE.read_text())
    model = str(ASSETS / d["model"]) if d.get("model") else None
    if model and not (Path(model) / C.MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"{DEFAULT_FILE}: names {model}, which has no {C.MANIFEST_FILE}")
    return {**d, "model": model, "ensemble": d.get("ensemble")}


def preset(name: str) -> dict:
    """A context's default (recover/assets/presets.json): {"ensemble": shipped name, "model": its members' base,
    "why": ...}. The ONE place both `recover predict --preset kaggle` and `make datasets` (so the submission
    notebook) read what Kaggle serves."""
    if name not in C.PRESETS:
        raise ValueError(f"--preset {name!r}: choose one of {', '.join(C.PRESETS)}")
    f = ASSETS / C.PRESETS_FILE
    presets = {k: v for k, v in json.loads(f.read_text()).items() if k != "format_version"} if f.is_file() else {}
    if name not in presets:
        raise ValueError(f"--preset {name}: {f} has no entry for it")
    p = presets[name]
    unknown = sorted(set(p) - {"ensemble", "model", "why", "figures", "command"})
    if unknown or not p.get("ensemble"):
        raise ValueError(f"{f}: preset {name}: " + (f"unknown key {unknown[0]!r}" if unknown else "names no ensemble"))
    return p


def kaggle_preset_ensemble(model: str | None) -> str | None:
    """The ensemble `recover kaggle datasets` stages for the notebook when no --ensemble is given: the Kaggle
    preset's, when the staged base is the preset's base (a 7B base from a train kernel serves its own LoRA)."""
    p = preset("kaggle")
    return p["ensemble"] if model is not None and model == p.get("model") else None


def resolve_predictor(predictor: str | None, model: str | None,
                      ensemble: str | None = None) -> tuple[str, str | None, str | None]:
    """What `--predictor` / `--model` / `--ensemble` mean together -> (predictor, model, ensemble); every
    combination is explicit or an error."""
    if ensemble is not None:
        if predictor not in (None, "ensemble"):
            raise ValueError("--ensemble: its members name their models; give no --predictor")
        return "ensemble", model, ensemble  # model: a staged copy of the members' base GGUF (EnsembleSpec.with_base)
    if predictor is None and model is None:
        d = default_choice()
        return d["predictor"], d["model"], d["ensemble"]
    if predictor == "ensemble":
        d = default_choice()
        if not d["ensemble"]:
            raise ValueError("--predictor ensemble: give --ensemble NAME (no ensemble is the shipped default)")
        return "ensemble", None, d["ensemble"]
    if predictor is None:
        predictor = infer_kind(model)
    if predictor == "embed" and model is None:
        from .embed import default_artifact

        shipped = default_artifact()
        if shipped is None:
            raise ValueError("--predictor embed: no --model given and no embed predictor is shipped")
        return "embed", str(shipped), None
    if predictor == "mean" and model is not None:
        raise ValueError("--predictor mean takes no --model (use --mean-prompt for another constant)")
    return predictor, model, None


def resolve_model_path(model: str) -> str:
    """`pypi:smollm2` / `pypi:gemma3-270m` -> the GGUF inside its PyPI wheel; paths as given."""
    from ..pypi_models import pypi_gguf

    p = pypi_gguf(model)
    return str(p) if p is not None else model


def with_default_lora(model: str, llm: dict) -> dict:
    """The LLM options to serve `model` with: a PyPI base named without --lora gets its shipped final-fit
    adapter (C.DEFAULT_LORAS: the strongest LLM the toolkit has); `--lora none` serves the bare base."""
    lora = llm.get("lora_path")
    if lora == C.NO_LORA:
        return {k: v for k, v in llm.items() if k != "lora_path"}
    if lora is None and model in C.DEFAULT_LORAS and C.DEFAULT_LORAS[model] in shipped_loras():
        return {**llm, "lora_path": C.DEFAULT_LORAS[model]}
    return llm


def resolve_lora(name_or_path: str) -> tuple[str, dict]:
    """`--lora`: a shipped adapter's name (recover/assets/lora/<name>/) or a LoRA GGUF path.

    -> (GGUF path, serve settings). A shipped adapter was trained on prompts built with a given
    template and context, so it is served with the same ones unless the user overrides them."""
    path, m = lora_manifest(name_or_path)
    return path, dict(m.get("serve", {}))


def lora_manifest(name_or_path: str) -> tuple[str, dict]:
    """-> (GGUF path, its manifest or {}): a shipped adapter's, or the one staged beside a LoRA GGUF."""
    folder = ASSETS / C.LORA_ASSETS_DIR / name_or_path
    mf = folder / C.MANIFEST_FILE
    if mf.is_file():
        m = json.loads(mf.read_text())
        return str(folder / m["file"]), m
    f = Path(name_or_path)
    if f.is_file():  # a staged copy (e.g. a Kaggle dataset) keeps its manifest beside it
        beside = f.with_name(C.MANIFEST_FILE)
        m = json.loads(beside.read_text()) if beside.is_file() else {}
        return name_or_path, m if m.get("file") == f.name else {}
    names = ", ".join(shipped_loras()) or "none shipped"
    raise FileNotFoundError(f"--lora {name_or_path}: not a file and not a shipped adapter ({names})")


def shipped_loras() -> list[str]:
    root = ASSETS / C.LORA_ASSETS_DIR
    return sorted(p.parent.name for p in root.glob(f"*/{C.MANIFEST_FILE}")) if root.is_dir() else []


def infer_kind(model: str) -> str:
    if model.endswith(".gguf") or model in C.PYPI_MODELS:
        return "llm"
    mf = Path(model) / C.MANIFEST_FILE
    if mf.is_file() and json.loads(mf.read_text()).get("kind") == "embed_predictor":
        return "embed"
    raise ValueError(f"--model {model}: neither a .gguf file nor an embed-predictor folder; pass --predictor")


def default_cpu_quant() -> dict | None:
    """The CPU choice for THIS machine (predict/cpu_choice.py): what `recover bench --choose-cpu-quant` measured
    here (~/.cache/recover/cpu-choice-<cpu key>.json), else the packaged rule of the CPU's feature class."""
    from .cpu_choice import cpu_choice

    return cpu_choice()


def cpu_torch_dtype() -> str:
    """The torch engine's precision when none is asked for: what the machine's choice names with torch, else bf16
    where the CPU has bf16 hardware and fp32 where it does not."""
    choice = default_cpu_quant() or {}
    if choice.get("engine") == "torch" and choice.get("torch_dtype"):
        return choice["torch_dtype"]
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def cpu_engine(engine: str = "auto") -> str:
    """The engine `engine` means on a CPU: auto = torch where this machine's choice names it (and a bf16
    precision only on bf16 hardware) and torch is importable; llama.cpp elsewhere."""
    if engine != "auto":
        return engine
    choice = default_cpu_quant() or {}
    needs_bf16 = choice.get("torch_dtype") in (None, "bf16", "amp")
    return "torch" if (choice.get("engine") == "torch" and (cpu_has_fast_bf16() or not needs_bf16) and
                       all(importlib.util.find_spec(m) for m in ("torch", "transformers", "gguf"))) else "llama"


def serve_model_path(model: str, llm: dict, cpu_quant: str | None = "auto", log=print) -> str:
    """The GGUF llama.cpp loads. On CPU the packaged model is served as a cached requant in the
    measured fastest quant (`auto`); `--cpu-quant Q8_0` asks for it with any GGUF, `none` never."""
    path = resolve_model_path(model)
    on_gpu = llm.get("n_gpu_layers", 0) not in (0, None)
    if cpu_quant in (None, "none") or on_gpu:
        return path
    if cpu_quant == "auto" and cpu_engine(llm.get("engine", "auto")) == "torch":
        return path  # the torch engine dequantises the file the adapters were trained and verified on
    if cpu_quant == "auto":
        choice = default_cpu_quant() if model == C.PYPI_SMOLLM2 else None
        quant, why = (choice or {}).get("quant"), f"this machine's CPU choice: {(choice or {}).get('source')}"
    else:
        quant, why = cpu_quant, "--cpu-quant"
    if not quant:
        return path
    from ..cpus import user_cache_dir
    from .quantize import cached_requant

    out = cached_requant(path, quant, user_cache_dir())
    log(f"CPU: serving {out} ({quant} requant of {Path(path).name}; {why})")
    return str(out)
