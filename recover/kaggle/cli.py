"""`recover kaggle`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

import os

import yaml

from .. import constants as C
from ..models.shipped import resolve_model_path
from ..predict.defaults import kaggle_preset_ensemble
from ..train.recipe import resolve_recipe
from . import push, stage
from .config import KaggleConfig
from .hedge import run_hedge
from .train_kernel import TrainSpec, plan, probe_config, resolve_train_output


def _kaggle(a):
    a.out = a.out or {"kernel": "build/kernels", "hedge": "build/hedge"}.get(a.action, "build/datasets")
    cfg = KaggleConfig.load(a.config)
    if a.action == "wheels":
        print(stage.build_wheels(a.wheels, download=not a.no_download))
    elif a.action == "datasets":
        print(stage.stage_wheels_dataset(cfg, a.wheels, a.out))
        model = resolve_model_path(a.model) if a.model else None
        if a.lora and os.path.isfile(os.path.join(a.lora, "kaggle_train_output.json")):  # a train kernel's output
            model, a.lora = resolve_train_output(a.lora, model)
            print(f"train kernel output: LoRA {a.lora} on base {model}")
        # no --ensemble: the Kaggle preset's, when the base staged is its base (recover predict --preset kaggle
        # reads the same file); --ensemble none stages none
        ensemble = None if a.ensemble == "none" else a.ensemble or kaggle_preset_ensemble(a.model)
        if ensemble and not a.ensemble:
            print(f"ensemble: {ensemble} (the Kaggle preset, recover/assets/presets.json)")
        print(stage.stage_model_dataset(cfg, model, a.embed, a.mean_prompt, a.out, lora=a.lora,
                                         ensemble=ensemble))
        slugs = [cfg.wheels_dataset, cfg.model_dataset]
        if a.data:
            print(stage.stage_data_dataset(cfg, a.data, a.out))
            slugs.append(cfg.data_dataset)
        if a.base:
            print(stage.stage_base_dataset(cfg, resolve_model_path(a.base), a.out))
            slugs.append(cfg.base_dataset)
        for slug in slugs:
            push.validate_dataset_folder(f"{a.out}/{slug}")
    elif a.action == "submit":
        if a.version is None:
            raise ValueError("kaggle submit: --version N (the submission kernel's version to submit)")
        push.submit_kernel(C.COMPETITION_SLUG, f"{cfg.username}/{cfg.submit_kernel}", a.version, a.message)
    elif a.action == "publish":
        for slug in (cfg.wheels_dataset, cfg.model_dataset, cfg.data_dataset, cfg.base_dataset):
            if slug in (cfg.wheels_dataset, cfg.model_dataset) or os.path.isdir(f"{a.out}/{slug}"):  # others when staged
                push.publish_dataset(f"{a.out}/{slug}", new=a.new)
    elif a.action == "hedge":
        if not (a.answers and a.truth and a.mean_prompt):
            raise ValueError("kaggle hedge: --answers CSV --truth CSV --mean-prompt JSON (and --probes, --embedder)")
        run_hedge(a.answers, a.truth, a.mean_prompt, a.out, a.probes, a.embedder)
    elif a.action == "plan":
        print(f"{a.recipe}: PROJECTED Kaggle T4 x2 time per chain stage (bench/projection.py; not measured)")
        plan(probe_config(yaml.safe_load(resolve_recipe(a.recipe).read_text())))
    else:
        train = TrainSpec(a.recipe or TrainSpec.recipe, a.holdout, a.part) if a.name == "train" else None
        d = stage.render_kernel(a.name, cfg, a.out, shard=a.shard, train=train)
        meta = push.validate_kernel_folder(d)
        print(f"staged {d} ({meta['id']}, internet {'on' if meta['enable_internet'] else 'off'}, "
              f"{meta['machine_shape']}); kaggle's local validation passed; inputs: "
              + ", ".join(r for k in ("dataset_sources", "kernel_sources", "model_sources") for r in meta[k]))
        if a.push:
            push.check_before_push(a.name, meta, cfg.username, a.out)
            push.push_kernel(d)


def add_cli(sub) -> None:
    s = sub.add_parser("kaggle", help="offline wheels, datasets, kernels; validate and push with the kaggle CLI")
    s.add_argument("action", choices=["wheels", "datasets", "publish", "kernel", "submit", "plan", "hedge"])
    s.add_argument("--config", default="setup.cfg", help="holds [recover.kaggle] (username, slugs)")
    s.add_argument("--wheels", default="build/wheels")
    s.add_argument("--no-download", action="store_true", help="wheels: skip pip download (offline rebuild)")
    s.add_argument("--out", help="default: build/datasets or build/kernels")
    s.add_argument("--model", help="datasets: GGUF to ship")
    s.add_argument("--embed", help="datasets: embed-predictor folder to ship")
    s.add_argument("--lora", help="datasets: a LoRA GGUF (or shipped name, e.g. smollm2-dpo-all) staged beside --model, "
                   "or a train kernel's output folder (kaggle_train_output.json: its LoRA and, when made there, its base)")
    s.add_argument("--base", help="datasets: a base model (HF folder or GGUF) for kernels/train (recipe kaggle_base "
                   "dataset:<base_dataset>)")
    s.add_argument("--ensemble", help="datasets: a shipped ensemble the notebook runs on --model (its members' base); default: the Kaggle "
                   "preset's when --model is its base (recover/assets/presets.json); none: no ensemble")
    s.add_argument("--mean-prompt", help="datasets: mean_prompt.json to ship (default: the package's)")
    s.add_argument("--data", action="append", help="datasets: labelled CSV or prompt .txt for kernels/tune; repeat")
    s.add_argument("--new", action="store_true", help="publish: datasets create (default: datasets version)")
    s.add_argument("--name", default="submit", help="kernel: kernels/<name> (submit, wheels, bench, rewrite, train, tune)")
    s.add_argument("--push", action="store_true", help="kernel: run `kaggle kernels push` after validating")
    s.add_argument("--version", type=int, help="submit: the submission kernel's version (kaggle kernels status)")
    s.add_argument("--message", default="recover", help="submit: the submission's description")
    s.add_argument("--shard", help="kernel rewrite: i/N, one kernel per shard")
    s.add_argument("--recipe", help="kernel train / plan: the chain recipe (built-in name or YAML)")
    s.add_argument("--holdout", help="kernel train: the source held out (default: the recipe's; none = final fit)")
    s.add_argument("--answers", help="hedge: the LLM's answers (id, rewrite_prompt) on labelled rows it never trained on")
    s.add_argument("--truth", help="hedge: the labelled CSV holding those rows")
    s.add_argument("--probes", help="hedge: leaderboard probes CSV (prompt, score or public_lb)")
    s.add_argument("--embedder", help="hedge: sentence-t5 folder (default: found under /kaggle/input, else the proxy)")
    s.add_argument("--part", type=int, default=1, help="kernel train: session n > 1 resumes part n-1's output")
    s.set_defaults(fn=_kaggle)
