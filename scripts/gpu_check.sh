#!/usr/bin/env bash
# The GPU path end to end on a CUDA machine: build the CUDA llama-cpp-python wheel from the pinned
# sdist, offload a (tiny, made on the spot) GGUF, one QLoRA nf4 DPO step with bitsandbytes, export,
# tokens/s. `scripts/gpu_check.sh --cpu-dry-run` runs the same steps on the CPU (CI does, see
# tests/test_gpu_check.py) with the llama-cpp-python already installed.
#   SDIST=path/llama_cpp_python-0.3.36.tar.gz   (default: pip download of the pinned version)
#   CUDA_ARCHS=75 (T4) | 90 (H100/H200) | native  TOKENIZER=dir with SmolLM2's tokenizer.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/gpu-check}
DEVICE=cuda
[ "${1:-}" = "--cpu-dry-run" ] && DEVICE=cpu
VERSION=$($PY -c "from recover import constants as C; print(C.LLAMA_CPP_PYTHON_VERSION)")
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv
  mkdir -p "$OUT/wheel"
  SDIST=${SDIST:-}
  if [ -z "$SDIST" ]; then
    $PY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT/sdist"
    SDIST=$(ls "$OUT"/sdist/llama_cpp_python-"$VERSION".tar.gz)
  fi
  # GGML_NATIVE=OFF: the native CPU build segfaulted on quantized GGUFs here; the arch list is explicit
  CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-native}" \
    $PY -m pip wheel --no-deps --no-build-isolation --no-cache-dir "$SDIST" -w "$OUT/wheel"
  $PY -m pip install -q --no-deps --force-reinstall "$OUT"/wheel/llama_cpp_python-*.whl
fi
exec $PY -m recover gpu-check --device "$DEVICE" --out "$OUT" ${TOKENIZER:+--tokenizer "$TOKENIZER"}
