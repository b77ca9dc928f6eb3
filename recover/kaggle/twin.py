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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE_FILE = ROOT / "offline_wheels" / "kaggle-image.txt"


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
    venv = (cache or Path.home() / ".cache" / "recover-twin") / f"{key}-{kind}"
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
