# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test bench run lint docker-python docker-test gpu-check

setup: $(VENV)/.installed

# setuptools warns on every editable install that a folder named like a package may shadow it: noise
# for a user setting up, and this project runs from its root on purpose. The `cluster` extra (Ray) is
# installed too, so that the tests of preprocess.py --engine ray run rather than skip.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[cpu,export,test,cluster]'
	touch $@

test: setup
	$(PY) -m pytest

# The service's table (latency, start-up, memory, preprocessing) against its targets, then the
# command-line prediction's latency and copy recognition.
bench: setup
	$(PY) benchmarks/bench_service.py
	$(PY) benchmarks/bench_predict.py
	$(PY) benchmarks/bench_copies.py
	$(PY) benchmarks/bench_index.py --tracks 100000 1000000

# Serves on SOUNDALIKE_HOST:SOUNDALIKE_PORT (127.0.0.1:5000) with waitress (model/service/server.py). A data
# folder with no store gets the synthesised demo library first, so a fresh clone has something to serve.
run: setup
	$(PY) app.py

# The Docker image's Python layer, as far as a machine without Docker can check it: the base image's
# TensorFlow (2.18.0), the project installed as the Dockerfile installs it, and the network's tests on the
# runtime the image serves with (its SOUNDALIKE_RUNTIME=keras).
DOCKER_VENV ?= .venv-docker
docker-python:
	$(PYTHON) -m venv $(DOCKER_VENV)
	$(DOCKER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DOCKER_VENV)/bin/python -m pip install --quiet tensorflow==2.18.0
	$(DOCKER_VENV)/bin/python -m pip install --quiet . pytest
	SOUNDALIKE_RUNTIME=keras $(DOCKER_VENV)/bin/python -m pytest tests/test_musicnn.py tests/test_classifier.py

# The Dockerfile linted, and the shell scripts checked; `make docker-test` builds and runs the image.
lint: setup
	$(VENV)/bin/hadolint Dockerfile
	sh -n docker-entrypoint.sh
	bash -n .ci/docker-test

# The image built on a stand-in base, run and checked (.ci/docker-test: health, an upload, a mounted
# collection, docker stop, non-root, volumes). Needs root or a running Docker engine; says so and passes where
# Docker cannot run.
docker-test:
	bash .ci/docker-test

# The network on an NVIDIA GPU against the CPU, and the GPU's throughput (benchmarks/gpu_check.py): installs
# the `gpu` extra into its own virtual environment. Without a GPU it says so and exits 3.
GPU_VENV ?= .venv-gpu
gpu-check:
	@command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 \
		|| { echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none): nothing to check"; exit 3; }
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GPU_VENV)/bin/python -m pip install --quiet -e '.[gpu,export]'
	$(GPU_VENV)/bin/python benchmarks/gpu_check.py
