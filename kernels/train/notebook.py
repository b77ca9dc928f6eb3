# %% [markdown]
# # recover: QLoRA DPO on Kaggle T4 x2
# Inputs: a dataset holding dpo_pairs.jsonl (from `make data`/`recover data pairs`) and the base
# model (internet on to pull it, or attach it). Output: the adapter in /kaggle/working/adapter,
# ready for `recover export --base <model> --adapter adapter`.

# %%
import glob, os, shutil, subprocess, sys

INPUT = os.environ.get("RECOVER_KAGGLE_ROOT", "/kaggle") + "/input"
find = lambda pat: sorted(glob.glob(f"{INPUT}/**/{pat}", recursive=True))  # noqa: E731
RECIPE = os.environ.get("RECOVER_RECIPE", "phi-2-t4")
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "trl==1.16.0", "peft", "bitsandbytes", "accelerate"],
               check=True)
wheel = [w for w in find("recover-*.whl")]
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", wheel[0]], check=True)

# %%
pairs = find("dpo_pairs.jsonl")[0]
here = os.path.dirname(os.path.abspath("__file__"))
acc = find("accelerate_t4x2.yaml") or [os.path.join(here, "accelerate_t4x2.yaml")]
subprocess.run(["accelerate", "launch", "--config_file", acc[0], "-m", "recover", "train", "dpo", "--recipe", RECIPE,
                "--train_file", pairs, "--output_dir", "/kaggle/working/adapter"], check=True)
print(os.listdir("/kaggle/working/adapter"))
