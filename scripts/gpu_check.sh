#!/usr/bin/env bash
# The GPU path end to end on a CUDA machine: build the CUDA llama-cpp-python wheel from the pinned
# sdist, offload a (tiny, made on the spot) GGUF, one QLoRA nf4 DPO step with bitsandbytes, export,
# tokens/s. `scripts/gpu_check.sh --cpu-dry-run` runs the same steps on the CPU (CI does, see
# tests/test_gpu_check.py), the wheel built by the same command with CPU flags (~5 min on 2 cores).
#   SDIST=path/llama_cpp_python-0.3.36.tar.gz   (default: pip download of the pinned version)
#   CUDA_ARCHS=75 (T4) | 90 (H100/H200) | native  TOKENIZER=dir with SmolLM2's tokenizer.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-build/gpu-check}
BUILD=${BUILD:-$OUT-wheel}  # beside OUT: the check itself starts OUT afresh
DEVICE=cuda
[ "${1:-}" = "--cpu-dry-run" ] && DEVICE=cpu
VERSION=$($PY -c "from recover import constants as C; print(C.LLAMA_CPP_PYTHON_VERSION)")
# ONE build command for both: the CUDA flags on a GPU, the CPU flags in the dry run (CI), so a broken
# command fails in CI too. GGML_NATIVE=OFF: the native CPU build segfaulted on quantized GGUFs here.
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv
  FLAGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS:-native}"
else
  FLAGS="-DGGML_NATIVE=OFF"
fi
mkdir -p "$BUILD/wheel"
SDIST=${SDIST:-}
if [ -z "$SDIST" ]; then
  $PY -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$BUILD/sdist"
  SDIST=$(ls "$BUILD"/sdist/llama_cpp_python-"$VERSION".tar.gz)
fi
# --no-build-isolation (a GPU box may have no index): the build backend must be in this venv. WHEELS=dir
# installs it offline from carried wheels.
$PY -m pip install -q ${WHEELS:+--no-index --find-links "$WHEELS"} scikit-build-core cmake ninja
CMAKE_ARGS="$FLAGS" $PY -m pip wheel -q --no-deps --no-build-isolation --no-cache-dir "$SDIST" -w "$BUILD/wheel"
WHEEL=$(ls "$BUILD"/wheel/llama_cpp_python-"$VERSION"-*.whl)
if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-deps --force-reinstall "$WHEEL"
else  # the dry run leaves the venv's llama_cpp alone: the fresh wheel must import from its own folder
  rm -rf "$BUILD/import"
  $PY -m pip install -q --no-deps --target "$BUILD/import" "$WHEEL"
  PYTHONPATH="$BUILD/import" $PY -c "import llama_cpp, sys; print('built wheel imports:', llama_cpp.__version__, llama_cpp.__file__); sys.exit(0 if '$BUILD/import' in llama_cpp.__file__ else 1)"
fi
exec $PY -m recover gpu-check --device "$DEVICE" --out "$OUT" ${TOKENIZER:+--tokenizer "$TOKENIZER"}
