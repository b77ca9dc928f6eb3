# %% [markdown]
# # recover: build the llama-cpp-python CUDA wheel for Kaggle T4 (sm_75)
# Internet ON, GPU ON. The wheel lands in /kaggle/working/llama-cuda/; the submission kernel
# attaches this kernel's output through `kernel_sources` and installs it offline.

# %%
import os, subprocess, sys

VERSION = "0.3.36"  # must equal recover.constants.LLAMA_CPP_PYTHON_VERSION
OUT = "/kaggle/working/llama-cuda"
os.makedirs(OUT, exist_ok=True)
env = dict(os.environ, CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=75", FORCE_CMAKE="1")
subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps",
                f"llama-cpp-python=={VERSION}", "-w", OUT], env=env, check=True)
print(os.listdir(OUT))
