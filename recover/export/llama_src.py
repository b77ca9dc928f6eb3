"""The converter that matches the runtime: convert_hf_to_gguf.py (+ its vendored gguf-py) taken from
the sdist of the SAME llama-cpp-python release the runtime pins, fetched once and cached."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .. import constants as C

KEEP = ("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/convert_lora_to_gguf.py",
        "vendor/llama.cpp/gguf-py/", "vendor/llama.cpp/conversion/", "vendor/llama.cpp/models/templates/")


def cache_dir() -> Path:
    root = os.environ.get("RECOVER_CACHE") or Path.home() / ".cache" / "recover-wheels"
    return Path(root) / f"llama-cpp-python-{C.LLAMA_CPP_PYTHON_VERSION}-src"


def llama_cpp_src() -> Path:
    """Folder holding convert_hf_to_gguf.py, convert_lora_to_gguf.py and gguf-py/."""
    dest = cache_dir()
    if (dest / "convert_hf_to_gguf.py").is_file() and (dest / "conversion").is_dir():
        return dest
    import llama_cpp  # llama_cpp: optional extra, loads a native library

    if llama_cpp.__version__ != C.LLAMA_CPP_PYTHON_VERSION:
        raise RuntimeError(f"runtime llama-cpp-python {llama_cpp.__version__} != pinned {C.LLAMA_CPP_PYTHON_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps",
                        f"llama-cpp-python=={C.LLAMA_CPP_PYTHON_VERSION}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        staging = dest.with_name(dest.name + ".tmp")
        with tarfile.open(sdist) as tf:
            for member in tf.getmembers():
                rel = member.name.split("/", 1)[1] if "/" in member.name else ""
                if any(rel == k or (k.endswith("/") and rel.startswith(k)) for k in KEEP) and member.isfile():
                    member.name = rel.replace("vendor/llama.cpp/", "", 1)
                    tf.extract(member, staging, filter="data")
        staging.rename(dest)
    return dest


def run_converter(script: str, args: list[str]) -> None:
    src = llama_cpp_src()
    env = dict(os.environ, PYTHONPATH=str(src / "gguf-py") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(src / script), *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{script} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
