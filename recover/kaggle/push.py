"""Validate staged folders with the kaggle package's own rules, then push with the real kaggle CLI."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .config import NO_CREDENTIALS, find_credentials
from .inputs import CUDA_WHEEL_KERNELS, InputError, check_one_image, check_required, check_username


def _api():
    """KaggleApi without the credential help that `import kaggle` prints when none are set up."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi  # kaggle: optional extra, reads credentials on import
    return KaggleApi()


class KaggleError(RuntimeError):
    pass


class _Validated(Exception):
    """Raised where kernels_push would open its network client: every local check has passed."""


def validate_kernel_folder(folder: str | Path) -> dict:
    """Run kaggle's own KaggleApi.kernels_push up to (not including) the network call."""
    api = _api()

    def stop():
        raise _Validated()

    api.build_kaggle_client = stop
    try:
        api.kernels_push(str(folder))
    except _Validated:
        pass
    except ValueError as e:
        raise KaggleError(f"{folder}: kaggle rejects the kernel folder: {e}") from None
    meta = json.loads((Path(folder) / "kernel-metadata.json").read_text())
    # A kernel attached to the competition is a submission: the hidden rerun has no internet.
    if meta.get("enable_internet") is not False and meta.get("competition_sources"):
        raise KaggleError(f"{folder}: a submission kernel must set enable_internet: false")
    needs = Path(folder) / "inputs.json"  # what the notebook reads (written at staging): all still attached?
    if needs.is_file():
        try:
            check_required(meta, json.loads(needs.read_text()), str(folder))
        except InputError as e:
            raise KaggleError(str(e)) from None
    return meta


def check_before_push(name: str, meta: dict, username: str, staged_root: str | Path) -> None:
    """What only matters once the kernel goes to Kaggle: a real username, and one Docker image for the kernels
    that load the CUDA wheel (the wheel kernel's first push may leave it empty: its image is then the one to
    copy into setup.cfg). One KaggleError line, before any network call."""
    where = f"kernel {name}"
    try:
        check_username(username, where)
        if name in CUDA_WHEEL_KERNELS and name != "wheels":
            metas = {name: meta}
            wheels = Path(staged_root) / "wheels" / "kernel-metadata.json"
            if wheels.is_file() and json.loads(wheels.read_text()).get("docker_image"):
                metas["wheels"] = json.loads(wheels.read_text())
            check_one_image(metas, where)
    except InputError as e:
        raise KaggleError(str(e)) from None


def validate_dataset_folder(folder: str | Path) -> dict:
    folder = Path(folder)
    meta_file = folder / "dataset-metadata.json"
    if not meta_file.is_file():
        raise KaggleError(f"{folder}: no dataset-metadata.json")
    meta = json.loads(meta_file.read_text())
    try:
        _api().validate_dataset_string(meta.get("id"))
    except ValueError as e:
        raise KaggleError(f"{meta_file}: id: {e}") from None
    if len(meta.get("title", "")) < 6 or len(meta.get("title", "")) > 50:
        raise KaggleError(f"{meta_file}: title must be 6 to 50 characters")
    if not [p for p in folder.rglob("*") if p.is_file() and p.name != "dataset-metadata.json"]:
        raise KaggleError(f"{folder}: no files to upload")
    return meta


def _kaggle_cli(args: list[str]) -> str:
    if not find_credentials():
        raise KaggleError(NO_CREDENTIALS)
    exe = shutil.which("kaggle") or str(Path(sys.executable).with_name("kaggle"))
    print("$ kaggle " + " ".join(args), flush=True)
    r = subprocess.run([exe, *args], text=True, capture_output=True, env=os.environ.copy())
    out = (r.stdout + r.stderr).strip()
    print(out)
    if r.returncode != 0:
        raise KaggleError(f"kaggle {' '.join(args[:2])} failed (exit {r.returncode}): {out.splitlines()[-1] if out else ''}")
    return out


# kaggle 2.2.5's `kernels push` exits 0 on these (only exceptions exit 1): a "successful" push of a kernel
# with missing inputs, whose run then dies far from the cause.
_DROPPED = "could not be added"
_PUSH_ERROR = "Kernel push error"


def check_push_output(out: str, folder: str | Path) -> int | None:
    """The version number a push reported; KaggleError (one line: what is missing, what to run first) when
    kaggle dropped a source or reported an error while exiting 0."""
    for line in out.splitlines():
        if _PUSH_ERROR in line:
            raise KaggleError(f"{folder}: {line.strip()}")
        if _DROPPED in line:
            raise KaggleError(f"{folder}: kaggle dropped an input ({line.strip()}): wait until the datasets have "
                              "finished processing (`kaggle datasets status OWNER/SLUG`) and the wheel/tune kernel's "
                              "run has finished (`kaggle kernels status OWNER/SLUG`), then push again")
    m = re.search(r"Kernel version (\d+) successfully", out)
    return int(m.group(1)) if m else None


def push_kernel(folder: str | Path) -> int | None:
    validate_kernel_folder(folder)
    version = check_push_output(_kaggle_cli(["kernels", "push", "-p", str(folder)]), folder)
    meta = json.loads((Path(folder) / "kernel-metadata.json").read_text())
    if version and meta.get("competition_sources"):
        print(f"pushed {meta['id']} version {version}; when its run has finished: make submit VERSION={version}")
    elif version:
        print(f"pushed {meta['id']} version {version}")
    return version


def publish_dataset(folder: str | Path, new: bool, message: str = "recover update") -> None:
    """`datasets create/version -r zip`: without -r zip, Kaggle drops subfolders."""
    validate_dataset_folder(folder)
    if new:
        _kaggle_cli(["datasets", "create", "-p", str(folder), "-r", "zip"])
    else:
        _kaggle_cli(["datasets", "version", "-p", str(folder), "-r", "zip", "-m", message])


def submit_args(competition: str, kernel: str, version: int, message: str, file: str = "submission.csv") -> list[str]:
    """A code-competition submission: the file the kernel's run writes, the kernel and its version.
    (`-k`/`-v` without `-f` exits 1 with "No file specified" in kaggle 2.2.5.)"""
    if int(version) < 1:
        raise KaggleError(f"VERSION {version}: a kernel version number >= 1 (see `kaggle kernels status {kernel}`)")
    if "/" not in kernel:
        raise KaggleError(f"kernel {kernel!r}: expected <owner>/<slug>")
    return ["competitions", "submit", competition, "-f", file, "-k", kernel, "-v", str(int(version)), "-m", message]


def submit_kernel(competition: str, kernel: str, version: int, message: str) -> None:
    _kaggle_cli(submit_args(competition, kernel, version, message))
