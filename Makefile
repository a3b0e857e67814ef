# Two entry points: `make run` (install, then serve on 127.0.0.1:11435) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python compiles llama.cpp on install: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)
# A portable x86-64 build (AVX2/FMA/F16C) instead of -march=native: on CPUs with AMX, a native
# build runs AMX tile instructions that sandboxed kernels refuse (SIGSEGV in ggml_backend_amx_mul_mat),
# and a native build made on one machine may not run on the next one.
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
endif

# Playwright drives Debian's /usr/bin/chromium: it must never try to fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
# The dashboard's scripts, pinned in package.json + package-lock.json; reinstalled only when those change.
JS_STAMP := node_modules/.installed

.PHONY: run test install install-dev system-deps npm-deps js-deps bench bench-peer bench-jobs converter clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PIP) install -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime js-deps

install-dev: $(VENV)/.dev js-deps

## node and npm, to fetch the pinned scripts (Debian's npm brings nodejs). Installed only as root.
npm-deps:
	@if command -v node >/dev/null && command -v npm >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends npm; \
	else \
		echo "npm-deps: node/npm missing and not root (or no apt-get): install npm to fetch the dashboard's scripts" >&2; \
		exit 1; \
	fi

# Exactly the lock's versions, no install scripts run (the packages ship ready-made dist/ files).
$(JS_STAMP): package.json package-lock.json | npm-deps
	npm ci --ignore-scripts --no-audit --no-fund
	touch $@

## htmx.org and htmx-ext-ws into node_modules/ (served from node_modules/*/dist/ by the dashboard).
js-deps: $(JS_STAMP)

## Install, prepare the default model, serve in the foreground with gunicorn.
run: install
	$(PY) -m ollama_server.models.prepare
	exec $(VENV)/bin/gunicorn -c config/gunicorn.conf.py

## Debian's prometheus (promtool, the server) and prometheus-alertmanager for the Prometheus tests, nginx for
## the two-instances-behind-nginx test, and chromium (with a font, so screenshots have glyphs) for the browser
## tests. Only what is missing is installed, only as root; elsewhere those tests skip. The prometheus and nginx
## packages start services (:9090, :80) where systemd runs: the tests run their own on ports of their own.
system-deps: npm-deps
	@missing=""; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null \
		|| missing="$$missing prometheus prometheus-alertmanager"; \
	command -v nginx >/dev/null || missing="$$missing nginx"; \
	command -v /usr/bin/chromium >/dev/null || missing="$$missing chromium"; \
	[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "system-deps:$$missing missing and not root (or no apt-get): the Prometheus/browser tests will skip"; \
	fi

## Install what tests need and run them.
test: install-dev system-deps
	$(PY) -m pytest

## Performance comparison (not part of the tests).
bench: install-dev
	$(PY) benchmarks/compare.py

## Peer benchmark against llama-server built from the pinned llama.cpp (cached; the first build takes ~15 min).
PEER_ARGS ?= --compare-variant reproducible_greedy=false --variant-workloads a,d
bench-peer: install-dev
	LLAMA_SERVER=$$(set -o pipefail; bash scripts/build_llama_server.sh | tail -1) && $(PY) benchmarks/peer.py --llama-server "$$LLAMA_SERVER" $(PEER_ARGS)

## Eval jobs beside interactive requests: TTFT and tokens/s idle vs during an eval job, the job's examples/s.
JOBS_ARGS ?=
bench-jobs: install-dev
	$(PY) benchmarks/jobs_interference.py $(JOBS_ARGS)

## llama.cpp's convert_hf_to_gguf.py (from the pinned llama-cpp-python sdist, cached) for registering Hugging Face
## checkpoints; its Python packages: $(PIP) install -r <the printed path>/requirements/requirements-convert_hf_to_gguf.txt
converter: | $(PY)
	PYTHON=$(PY) bash scripts/fetch_converter.sh

clean:
	rm -rf $(VENV) .pytest_cache node_modules
