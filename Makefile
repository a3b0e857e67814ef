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

.PHONY: run test install install-dev system-deps bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PIP) install -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

## Install, prepare the default model, serve in the foreground with gunicorn.
run: install
	$(PY) -m ollama_server.models.prepare
	exec $(VENV)/bin/gunicorn -c config/gunicorn.conf.py

## Debian's prometheus (promtool, the server) and prometheus-alertmanager for the Prometheus tests.
## Installed only as root; elsewhere those tests skip. The package starts a service on :9090 where systemd
## runs: the tests use ports of their own and never talk to it.
system-deps:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			prometheus prometheus-alertmanager; \
	else \
		echo "system-deps: promtool/prometheus missing and not root (or no apt-get): the Prometheus tests will skip"; \
	fi

## Install what tests need and run them.
test: install-dev system-deps
	$(PY) -m pytest

## Performance comparison (not part of the tests).
bench: install-dev
	$(PY) benchmarks/compare.py

clean:
	rm -rf $(VENV) .pytest_cache
