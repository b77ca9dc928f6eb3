# %% [markdown]
# # recover: measure the real llama.cpp rates on a Kaggle T4 (for `recover bench --calibrate`)
# Same inputs as the submission kernel. Writes /kaggle/working/bench.json; download it and run
# `recover bench --calibrate bench.json` locally to replace the projected T4 rates by measured ones.

# %%
import glob, os, subprocess, sys

INPUT = os.environ.get("RECOVER_KAGGLE_ROOT", "/kaggle") + "/input"
WORK = os.environ.get("RECOVER_KAGGLE_ROOT", "/kaggle") + "/working"
find = lambda pat: sorted(glob.glob(f"{INPUT}/**/{pat}", recursive=True))  # noqa: E731
wheels = find("*.whl")
cuda = [w for w in wheels if "llama_cpp_python" in w and "llama-cpu" not in w]
cpu = [w for w in wheels if "llama_cpp_python" in w and "llama-cpu" in w]
pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index"]
subprocess.run(pip + ["--no-deps", (cuda or cpu)[0]], check=True)
links = [x for d in sorted({os.path.dirname(w) for w in wheels}) for x in ("--find-links", d)]
subprocess.run(pip + links + ["recover", "diskcache"], check=True)

# %%
test = [p for p in find("test.csv") if "llm-prompt-recovery" in p] or find("test.csv")
model = find("*.gguf")[0]
gpu = ["--n-gpu-layers", "-1", "--flash-attn", "on"] if cuda else []
subprocess.run([sys.executable, "-m", "recover", "bench", "--model", model, "--backends", "llama", "--rows", "50",
                "--out", WORK] + (["--data", test[0]] if test else []) + gpu, check=True)
print(open(f"{WORK}/bench.json").read()[:3000])
