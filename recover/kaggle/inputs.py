"""What a kernel reads, checked before any network call, and the /kaggle/input layout its metadata gives.

Kaggle mounts exactly the sources a kernel's metadata lists (2026 layout):
  dataset_sources      owner/slug                           -> input/datasets/<owner>/<slug>/
  kernel_sources       owner/slug (its run's output)        -> input/notebooks/<owner>/<slug>/
  model_sources        owner/model/framework/variation/ver  -> input/models/<owner>/<model>/<framework>/<variation>/<ver>/
  competition_sources  slug                                 -> input/competitions/<slug>/
`mount_inputs` builds that layout from staged local folders, so a test runs a notebook on what its metadata
really attaches: an input dropped from the metadata is missing in the run, as it would be on Kaggle.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

PLACEHOLDER_USERNAMES = ("your-kaggle-username", "placeholder", "")
# Kernels that load the CUDA llama wheel built by kernels/wheels: one Docker image for all of them, so the wheel
# runs on the CUDA runtime it was built against.
CUDA_WHEEL_KERNELS = ("wheels", "submit", "train")


class InputError(ValueError):
    """One line: which input of which kernel is missing or wrong, and what to do."""


def model_handle_ok(handle: str) -> bool:
    parts = handle.split("/")
    return len(parts) == 5 and all(parts) and parts[4].isdigit()


def mount_path(kind: str, ref: str) -> Path:
    """Where Kaggle mounts a source, relative to /kaggle/input."""
    if kind == "dataset_sources":
        return Path("datasets", *ref.split("/"))
    if kind == "kernel_sources":
        return Path("notebooks", *ref.split("/"))
    if kind == "model_sources":
        return Path("models", *ref.split("/"))
    if kind == "competition_sources":
        return Path("competitions", ref)
    raise InputError(f"{kind}: not a kernel-metadata source list")


def sources(meta: dict) -> list[tuple[str, str]]:
    kinds = ("dataset_sources", "kernel_sources", "model_sources", "competition_sources")
    return [(k, ref) for k in kinds for ref in meta.get(k, [])]


def check_required(meta: dict, required: dict[str, str], where: str) -> None:
    """required: {ref: why the notebook reads it}. Every one must be attached by the metadata."""
    attached = {ref for _, ref in sources(meta)}
    for ref, why in required.items():
        if ref not in attached:
            raise InputError(f"{where}: kernel-metadata.json does not attach {ref} ({why}); the notebook reads it")
    for ref in meta.get("model_sources", []):
        if not model_handle_ok(ref):
            raise InputError(f"{where}: model_sources {ref!r}: a Kaggle Model handle is "
                             "owner/model/framework/variation/version (e.g. google/gemma/transformers/7b-it/3)")


def check_username(username: str, where: str) -> None:
    if username.strip().lower() in PLACEHOLDER_USERNAMES:
        raise InputError(f"{where}: username {username!r} is the placeholder: set username in setup.cfg "
                         "[recover.kaggle] (or KAGGLE_USERNAME) to your Kaggle username before pushing")


def check_one_image(metas: dict[str, dict], where: str) -> None:
    """metas: {kernel name: its metadata} for the kernels sharing the CUDA wheel: all pinned to ONE image."""
    images = {name: m.get("docker_image", "") for name, m in metas.items()}
    if not all(images.values()):
        unset = ", ".join(n for n, i in images.items() if not i)
        raise InputError(f"{where}: docker_image is empty for {unset}: the CUDA wheel kernel, the train kernel and "
                         "the submission may then run on different images; set docker_image in setup.cfg "
                         "[recover.kaggle] (its comment says where to read it)")
    if len(set(images.values())) > 1:
        raise InputError(f"{where}: kernels pinned to different docker images: {images}")


def mount_inputs(meta: dict, staged: dict[str, str | Path], dest: str | Path, link: bool = True) -> Path:
    """dest/input laid out as Kaggle mounts `meta`'s sources, from staged local folders ({ref: folder}).
    A source the metadata lists but nothing staged is an error; a staged folder the metadata does not
    list is NOT mounted (exactly as on Kaggle). -> dest/input."""
    inp = Path(dest) / "input"
    for kind, ref in sources(meta):
        if ref not in staged:
            raise InputError(f"{ref} ({kind}): attached by the metadata but not staged here")
        target = inp / mount_path(kind, ref)
        if target.exists() or target.is_symlink():
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        src = Path(staged[ref]).resolve()
        if link:
            target.symlink_to(src, target_is_directory=True)
        else:
            shutil.copytree(src, target)
    return inp


def read_meta(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "kernel-metadata.json").read_text())
