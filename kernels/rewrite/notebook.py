# %% [markdown]
# # recover: one shard of the rewrite stage on a Kaggle GPU
# Fan-out: push this kernel N times with SHARD = 0/N, 1/N, ... (`make kernel-rewrite SHARD=i/N`
# renders each copy); download every output and run `recover data merge`. Inputs: the wheels
# dataset, a dataset with originals.csv, and a rewriter GGUF (e.g. Gemma-7b-it Q4_K_M).

# %%
import glob, os, subprocess, sys

SHARD = os.environ.get("RECOVER_SHARD", "0/1")  # replaced by `recover kaggle kernel --shard`
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
originals = find("originals.csv")[0]
model = [g for g in find("*.gguf")][0]
subprocess.run([sys.executable, "-m", "recover", "data", "rewrite", "--originals", originals, "--model", model,
                "--shard", SHARD, "--out", f"{WORK}/rewrites", "--n-gpu-layers", "-1" if cuda else "0",
                "--temperature", "0.7", "--per-original", "2"], check=True)
print(sorted(os.listdir(f"{WORK}/rewrites")))
