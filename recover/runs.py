"""Run folders: every job records its resolved config, package versions, seed and git hash."""
from __future__ import annotations

import dataclasses
import importlib.metadata as md
import platform
import subprocess
import time
from pathlib import Path

from . import __version__
from .csvio import atomic_write_json

TRACKED_PACKAGES = ("torch", "transformers", "sentence-transformers", "llama-cpp-python", "peft", "trl",
                    "bitsandbytes", "accelerate", "numpy", "pandas", "kaggle")


def package_versions() -> dict[str, str | None]:
    out = {"recover": __version__, "python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def git_hash() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                           cwd=Path(__file__).resolve().parent)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def new_run_dir(root: str | Path, kind: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{kind}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def record_run(run_dir: str | Path, config, seed: int | None, extra: dict | None = None) -> Path:
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    payload = {"config": cfg, "seed": seed, "versions": package_versions(), "git": git_hash(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    payload.update(extra or {})
    atomic_write_json(Path(run_dir) / "config.json", payload)
    return Path(run_dir)
