# %% [markdown]
# # recover: the training chain on Kaggle T4 x2
# The same `recover train chain` as `make train-dev` on the CPU, with the T4 recipe
# (`chain-gemma-2b-t4`): SFT -> on-policy DPO pairs (llama.cpp sampling) -> DPO from the SFT adapter
# -> verified LoRA GGUFs -> held-out evaluation. Inputs: the offline wheels dataset, the labelled
# pairs CSVs (one per source), and the base model (HF folder, e.g. gemma-2b-it). Output:
# /kaggle/working/chain (adapters, LoRA GGUFs, eval report) - attach it to the submission.

# %%
import glob, os, subprocess, sys

import yaml

INPUT = os.environ.get("RECOVER_KAGGLE_ROOT", "/kaggle") + "/input"
WORK = os.environ.get("RECOVER_KAGGLE_WORKING", "/kaggle/working")
find = lambda pat: sorted(glob.glob(f"{INPUT}/**/{pat}", recursive=True))  # noqa: E731
RECIPE = os.environ.get("RECOVER_CHAIN_RECIPE", "chain-gemma-2b-t4")
HOLDOUT = os.environ.get("RECOVER_HOLDOUT")
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "trl==1.16.0", "peft", "bitsandbytes", "accelerate"],
               check=True)
wheels = find("*.whl")
pick = [w for w in wheels if "llama_cpp_python" in w and "cu12" in w] or [w for w in wheels if "llama_cpp_python" in w]
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", pick[0]] if pick else ["true"], check=True)
subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps"] + find("recover-*.whl")[:1], check=True)

# %%
from recover.train.recipe import resolve_recipe  # noqa: E402

cfg = yaml.safe_load(resolve_recipe(RECIPE).read_text())
labelled = [p for p in find("*.csv") if "rewrite_prompt" in open(p, encoding="utf-8").readline()]
cfg["data"] = labelled
cfg["holdout"] = HOLDOUT or cfg["holdout"]
models = [os.path.dirname(p) for p in find("config.json") if os.path.isfile(os.path.join(os.path.dirname(p), "tokenizer.json"))]
cfg["base_hf"] = next((m for m in models if "gemma" in m.lower()), models[0] if models else cfg["base_hf"])
here = os.path.dirname(os.path.abspath("__file__"))
acc = find("accelerate_t4x2.yaml") or [os.path.join(here, "accelerate_t4x2.yaml")]
cfg["launcher"] = ["accelerate", "launch", "--config_file", acc[0], "-m", "recover"]
cfg["out"] = f"{WORK}/chain"
os.makedirs(cfg["out"], exist_ok=True)
with open(f"{WORK}/chain.yaml", "w") as f:
    yaml.safe_dump(cfg, f)
print(yaml.safe_dump(cfg))

# %%
subprocess.run([sys.executable, "-m", "recover", "train", "chain", "--recipe", f"{WORK}/chain.yaml"], check=True)
print(open(f"{WORK}/chain/stages/eval.json").read()[:3000])
