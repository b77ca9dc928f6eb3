"""scripts/gpu_check.sh --cpu-dry-run: the GPU check's own steps, on this CPU (what CI can run)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "gpu-check"
    r = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--cpu-dry-run"], capture_output=True, text=True,
                       env={**os.environ, "OUT": str(out), "HF_HUB_OFFLINE": "1"}, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    # the wheel was built from the pinned sdist by the same command the CUDA run uses, and it imports
    from recover import constants as C

    assert list((tmp_path / "gpu-check-wheel" / "wheel").glob(f"llama_cpp_python-{C.LLAMA_CPP_PYTHON_VERSION}-*.whl"))
    assert f"built wheel imports: {C.LLAMA_CPP_PYTHON_VERSION}" in r.stdout
    rep = json.loads((out / "gpu_check.json").read_text())
    assert rep["device"] == "cpu" and rep["offload"]["n_gpu_layers"] == 0
    assert rep["offload"]["gen_tokens"] > 0 and rep["offload"]["tokens_per_s"] > 0
    assert rep["qlora_dpo"]["steps"] == 1 and rep["qlora_dpo"]["base_4bit_linear_layers"] > 0  # nf4 for real
    assert rep["export"]["Q8_0"]["passed"] and rep["export_offload"]["gen_tokens"] > 0


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    from recover.gpu_check import run_gpu_check

    with pytest.raises(RuntimeError, match="no CUDA device"):
        run_gpu_check("cuda", str(tmp_path / "o"))
