# The two commands: `make run` (local stack with examples) and `make test` (the whole suite).
# Both set everything up themselves: Debian packages, the virtual environment, the control plane binaries.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test lint format crds controlplane-bin system-deps venv bench clean

run: venv controlplane-bin
	$(BIN)/desktop-image-operator dev

test: venv controlplane-bin lint
	@./scripts/pytest.sh $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/ruff format --check operator tests benchmarks
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix operator tests benchmarks
	$(BIN)/ruff format operator tests benchmarks

crds: venv
	$(BIN)/desktop-image-operator crd > crds/clouddesktop.yc.io_desktopimages.yaml

# etcd and kube-apiserver built from their Go modules; cached outside the repository by version.
controlplane-bin: venv
	$(BIN)/python -m desktop_image_operator.devenv.binaries

venv: $(STAMP)

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	@./scripts/system-deps.sh

bench: venv controlplane-bin
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info reports
