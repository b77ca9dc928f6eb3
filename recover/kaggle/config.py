"""Kaggle identity and slugs from ONE place: setup.cfg [recover.kaggle], overridable by env."""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, fields
from pathlib import Path

from .. import constants as C

SECTION = "recover.kaggle"


@dataclass(frozen=True)
class KaggleConfig:
    username: str
    wheels_dataset: str
    model_dataset: str
    wheel_builder_kernel: str
    submit_kernel: str
    bench_kernel: str = "recover-t4-bench"
    rewrite_kernel: str = "recover-rewrite-shard"
    train_kernel: str = "recover-qlora-dpo-t4x2"
    tune_kernel: str = "recover-tune-st5"  # kernels/tune: mean prompt + embed predictor against sentence-t5
    data_dataset: str = "recover-labelled-data"  # labelled CSVs + prompt files for kernels/tune and kernels/train
    base_dataset: str = "recover-base-model"  # a base model for kernels/train as a dataset (recipe kaggle_base dataset:)
    attach_tune: str = ""  # "1": the submission kernel takes kernels/tune's output (kernel_sources)
    attach_train: str = ""  # "1": kernels/tune takes kernels/train's output (its held-out answers: the hedge)
    extra_datasets: str = ""  # comma-separated owner/slug, e.g. a public sentence-t5-base dataset
    # One image for the CUDA-wheel builder and the submission, so the wheel runs on the CUDA runtime it
    # was built against (kernel-metadata `docker_image`); empty: each kernel stays on the image of its
    # first version (`docker_image_pinning_type: original`).
    docker_image: str = ""

    @classmethod
    def load(cls, cfg_path: str | os.PathLike = "setup.cfg") -> "KaggleConfig":
        """setup.cfg values; KAGGLE_USERNAME and RECOVER_KAGGLE_<FIELD> env vars win."""
        cp = configparser.ConfigParser()
        cp.read(cfg_path)
        sec = cp[SECTION] if cp.has_section(SECTION) else {}
        vals = {}
        for f in fields(cls):
            env = os.environ.get(f"RECOVER_KAGGLE_{f.name.upper()}")
            if f.name == "username":
                env = env or os.environ.get("KAGGLE_USERNAME")
            val = env or sec.get(f.name, f.default if isinstance(f.default, str) else None)
            if val is None:
                raise ValueError(f"{cfg_path}: [{SECTION}] is missing '{f.name}'")
            vals[f.name] = val.strip()
        return cls(**vals)

    def ref(self, slug: str) -> str:
        return f"{self.username}/{slug}"

    @property
    def dataset_refs(self) -> list[str]:
        extra = [x.strip() for x in self.extra_datasets.split(",") if x.strip()]
        return [self.ref(self.wheels_dataset), self.ref(self.model_dataset)] + extra

    @property
    def competition(self) -> str:
        return C.COMPETITION_SLUG


def find_credentials() -> str | None:
    """Where Kaggle credentials were found, or None. They never enter the repo."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return "environment"
    cfg_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    for name in ("kaggle.json", "access_token"):
        if (cfg_dir / name).is_file():
            return str(cfg_dir / name)
    return None


NO_CREDENTIALS = ("no Kaggle credentials: put kaggle.json (Account -> API -> Create New Token) in ~/.kaggle/ "
                  "with chmod 600, or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN); never commit them")
