# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test bench run lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,test]'
	touch $@

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_preprocess.py
	$(PY) benchmarks/bench_predict.py
	$(PY) benchmarks/bench_api.py
	$(PY) benchmarks/bench_copies.py

# Serves on SOUNDALIKE_HOST:SOUNDALIKE_PORT (127.0.0.1:5000) with gunicorn (gunicorn.conf.py). A data
# folder with no store gets the synthesised demo library first, so a fresh clone has something to serve.
run: setup
	$(PY) -m model.demo_library --if-empty
	$(VENV)/bin/gunicorn

# The Dockerfile cannot be built here (no Docker engine): it is linted, and its entry script checked.
lint: setup
	$(VENV)/bin/hadolint Dockerfile
	sh -n docker-entrypoint.sh
