"""A Kaggle-image twin: Python 3.12 with the image's versions of what the notebook touches.

The offline notebook test used to stand in for Kaggle with this machine's Python 3.11 and its
package versions. The twin is a venv of the pyenv `python3.12` (as on Kaggle's 2026 image) holding
the pinned versions from offline_wheels/kaggle-image.txt, built once per file content into
~/.cache/recover-twin/<hash>-<light|full> (pip downloads from PyPI at build time; the notebook then
runs in it with no network). recover itself is never installed into it: the notebook installs it
from the staged wheels, as on Kaggle.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE_FILE = ROOT / "offline_wheels" / "kaggle-image.txt"
SHIP_FILE = ROOT / "offline_wheels" / "ship.txt"
CACHE = Path.home() / ".cache"


def image_requirements(path: Path = IMAGE_FILE) -> list[tuple[str, set[str]]]:
    """[(requirement, marks)] from kaggle-image.txt; a line without '==' is an error, not a float."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req, _, marks = line.partition(";")
        if "==" not in req:
            raise ValueError(f"{path}:{n}: {req.strip()!r} is not pinned (name==version, as read from the image)")
        out.append((req.strip(), {m.strip() for m in marks.split(",") if m.strip()}))
    return out


def find_python312() -> str:
    """The pyenv 3.12 interpreter (Kaggle's image is 3.12)."""
    for cand in (shutil.which("python3.12"), *sorted(Path.home().glob(".pyenv/versions/3.12.*/bin/python3.12"))):
        if cand and subprocess.run([str(cand), "--version"], capture_output=True).returncode == 0:
            return str(cand)
    raise FileNotFoundError("python3.12 not found (pyenv install 3.12): the Kaggle twin needs Kaggle's Python")


def build_twin(full: bool = False, cache: Path | None = None, log=print) -> Path:
    """-> the twin's python. Cached by the content of kaggle-image.txt and the kind."""
    reqs = image_requirements()
    kind = "full" if full else "light"
    key = hashlib.sha256(IMAGE_FILE.read_bytes()).hexdigest()[:12]
    venv = (cache or CACHE / "recover-twin") / f"{key}-{kind}"
    py = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return py
    if venv.exists():
        shutil.rmtree(venv)  # a half-built twin from a killed run
    subprocess.run([find_python312(), "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    deps = [r for r, m in reqs if "nodeps" not in m and (full or "full" not in m)]
    nodeps = [r for r, m in reqs if "nodeps" in m and (full or "full" not in m)]
    log(f"kaggle twin ({kind}): {find_python312()} + {', '.join(deps + nodeps)}")
    subprocess.run(pip + deps, check=True)
    if nodeps:
        subprocess.run(pip + (["--no-deps"] if not full else []) + nodeps, check=True)
    got = subprocess.run([str(py), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True)
    if not got.stdout.startswith("3.12"):
        raise RuntimeError(f"twin python is {got.stdout.strip()}, not 3.12")
    (venv / ".complete").write_text("\n".join(r for r, _ in reqs) + "\n")
    return py


def fresh_kernel_env(dest: Path, full: bool = False, log=print) -> Path:
    """A new, empty Python 3.12 venv whose 'image' packages come from the cached twin (a .pth line,
    as the image's site-packages): what the notebook installs lands in this venv only. -> python."""
    twin = build_twin(full, log=log)
    site = subprocess.run([str(twin), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([find_python312(), "-m", "venv", str(dest)], check=True)
    py = dest / "bin" / "python"
    # the image has one, recent setuptools: the venv's bundled copy must not shadow the twin's
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True)
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own, "kaggle_image.pth").write_text(site + "\n")
    return py


def ship_cache() -> Path:
    """The wheels of offline_wheels/ship.txt for cp312 manylinux, downloaded once per file content."""
    key = hashlib.sha256(SHIP_FILE.read_bytes()).hexdigest()[:12]
    return CACHE / "recover-wheels" / f"ship-{key}"


def fill_ship_cache(log=print) -> Path:
    d = ship_cache()
    if (d / ".complete").is_file():
        return d
    log(f"downloading the shipped wheels (cp312 manylinux, {SHIP_FILE.name}) into {d}")
    tmp = d.with_name(d.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
                    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "any", "--python-version", "3.12", "--implementation", "cp",
                    "-d", str(tmp), "-r", str(SHIP_FILE)], check=True)
    (tmp / ".complete").write_text(SHIP_FILE.read_text())
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return d


def offline_cache_ready() -> bool:
    """What `make setup` prepares so that the Kaggle tests touch no network: the light twin, the shipped wheels."""
    key = hashlib.sha256(IMAGE_FILE.read_bytes()).hexdigest()[:12]
    return (ship_cache() / ".complete").is_file() and (CACHE / "recover-twin" / f"{key}-light" / ".complete").is_file()


if __name__ == "__main__":  # make setup: everything the Kaggle tests would otherwise download
    print("kaggle twin:", build_twin(full=False), "| shipped wheels:", fill_ship_cache())


def fresh_train_env(dest: Path) -> Path:
    """The train kernel's stand-in image: a new, empty venv of THIS interpreter's base Python whose 'image'
    packages are this environment's (a .pth line): torch, trl, peft, transformers at the pinned versions. No
    cp312 torch can be installed here (PyPI's is a CUDA build whose nvidia-* pins this machine's index lacks), so
    the training run uses this machine's Python; the 3.12 twin runs the train notebook up to its torch check and
    the submission notebook whole. recover itself is not importable in it until the notebook installs it. -> python."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base), "-m", "venv", str(dest)], check=True)
    py = dest / "bin" / "python"
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    image = dest / "image-site-packages"  # this environment's packages, less recover (the notebook installs it)
    image.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("recover", "__editable__")) and entry.suffix != ".pth":
            (image / entry.name).symlink_to(entry)
    Path(own, "train_image.pth").write_text(str(image) + "\n")
    return py
