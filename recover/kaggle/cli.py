"""`recover kaggle`: the parser and the handler, beside the code they wire (recover/cli.py lists the verbs)."""
from __future__ import annotations

import os


def _kaggle(a):
    from .. import constants as C
    from . import push, stage
    from .config import KaggleConfig
    from ..predict.defaults import resolve_model_path

    a.out = a.out or ("build/kernels" if a.action == "kernel" else "build/datasets")
    cfg = KaggleConfig.load(a.config)
    if a.action == "wheels":
        print(stage.build_wheels(a.wheels, download=not a.no_download))
    elif a.action == "datasets":
        print(stage.stage_wheels_dataset(cfg, a.wheels, a.out))
        model = resolve_model_path(a.model) if a.model else None
        print(stage.stage_model_dataset(cfg, model, a.embed, a.mean_prompt, a.out, lora=a.lora,
                                         ensemble=a.ensemble))
        slugs = [cfg.wheels_dataset, cfg.model_dataset]
        if a.data:
            print(stage.stage_data_dataset(cfg, a.data, a.out))
            slugs.append(cfg.data_dataset)
        for slug in slugs:
            push.validate_dataset_folder(f"{a.out}/{slug}")
    elif a.action == "submit":
        if a.version is None:
            raise ValueError("kaggle submit: --version N (the submission kernel's version to submit)")
        push.submit_kernel(C.COMPETITION_SLUG, f"{cfg.username}/{cfg.submit_kernel}", a.version, a.message)
    elif a.action == "publish":
        for slug in (cfg.wheels_dataset, cfg.model_dataset, cfg.data_dataset):
            if slug != cfg.data_dataset or os.path.isdir(f"{a.out}/{slug}"):  # the data dataset only when staged
                push.publish_dataset(f"{a.out}/{slug}", new=a.new)
    else:
        d = stage.render_kernel(a.name, cfg, a.out, shard=a.shard)
        meta = push.validate_kernel_folder(d)
        print(f"staged {d} ({meta['id']}, internet {'on' if meta['enable_internet'] else 'off'}, "
              f"{meta['machine_shape']}); kaggle's local validation passed")
        if a.push:
            push.push_kernel(d)


def add_cli(sub) -> None:
    s = sub.add_parser("kaggle", help="offline wheels, datasets, kernels; validate and push with the kaggle CLI")
    s.add_argument("action", choices=["wheels", "datasets", "publish", "kernel", "submit"])
    s.add_argument("--config", default="setup.cfg", help="holds [recover.kaggle] (username, slugs)")
    s.add_argument("--wheels", default="build/wheels")
    s.add_argument("--no-download", action="store_true", help="wheels: skip pip download (offline rebuild)")
    s.add_argument("--out", help="default: build/datasets or build/kernels")
    s.add_argument("--model", help="datasets: GGUF to ship")
    s.add_argument("--embed", help="datasets: embed-predictor folder to ship")
    s.add_argument("--lora", help="datasets: a LoRA GGUF (or shipped name, e.g. smollm2-dpo-all) staged beside --model")
    s.add_argument("--ensemble", help="datasets: a shipped ensemble the notebook runs on --model (its members' base)")
    s.add_argument("--mean-prompt", help="datasets: mean_prompt.json to ship (default: the package's)")
    s.add_argument("--data", action="append", help="datasets: labelled CSV or prompt .txt for kernels/tune; repeat")
    s.add_argument("--new", action="store_true", help="publish: datasets create (default: datasets version)")
    s.add_argument("--name", default="submit", help="kernel: kernels/<name> (submit, wheels, bench, rewrite, train, tune)")
    s.add_argument("--push", action="store_true", help="kernel: run `kaggle kernels push` after validating")
    s.add_argument("--version", type=int, help="submit: the submission kernel's version (kaggle kernels status)")
    s.add_argument("--message", default="recover", help="submit: the submission's description")
    s.add_argument("--shard", help="kernel rewrite: i/N, one kernel per shard")
    s.set_defaults(fn=_kaggle)
