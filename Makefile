# Two entry points: `make run` (install, then serve on 127.0.0.1:11435) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python compiles llama.cpp on install: use every core.
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)

.PHONY: run test install install-dev bench clean

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

## Install what tests need and run them.
test: install-dev
	$(PY) -m pytest

## Performance comparison (not part of the tests).
bench: install-dev
	$(PY) benchmarks/compare.py

clean:
	rm -rf $(VENV) .pytest_cache
