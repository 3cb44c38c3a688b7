# The two commands: `make run` (local stack with examples) and `make test` (the whole suite).
# Both set everything up themselves: Debian packages, the virtual environment, the control plane binaries.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The operator (what ships), the development package (devtools/), and what only runs from a checkout.
PYTHON_TREES := operator devtools tests benchmarks

.PHONY: run test lint format crds manifests chart-readme controlplane-bin helm-bin promtool-bin system-deps venv bench bench-scale bench-chaos bench-watches clean

run: venv controlplane-bin
	$(BIN)/desktop-image-operator dev

test: venv controlplane-bin helm-bin promtool-bin lint
	@./scripts/pytest.sh $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check $(PYTHON_TREES)
	$(BIN)/ruff format --check $(PYTHON_TREES)
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint --config .hadolint.yaml Dockerfile
	./scripts/actionlint.sh

format: venv
	$(BIN)/ruff check --fix $(PYTHON_TREES)
	$(BIN)/ruff format $(PYTHON_TREES)

# The CRD from the pydantic models, its copy in the chart, and the plain manifests rendered from the chart.
crds: venv helm-bin
	$(BIN)/desktop-image-operator crd > crds/clouddesktop.yc.io_desktopimages.yaml
	cp crds/clouddesktop.yc.io_desktopimages.yaml deploy/helm/desktop-image-operator/crds/
	$(BIN)/python -m desktop_image_operator_dev.manifests

manifests: venv helm-bin
	$(BIN)/python -m desktop_image_operator_dev.manifests

# The chart's README.md from its values.schema.json and values.yaml.
chart-readme: venv
	$(BIN)/python -m desktop_image_operator_dev.chart_readme

# etcd and kube-apiserver built from their Go modules; cached outside the repository by version.
controlplane-bin: venv
	$(BIN)/python -m desktop_image_operator_dev.devenv.binaries

# Helm built from its Go module at the version pinned in scripts/helm.sh; cached outside the repository.
helm-bin: system-deps
	@./scripts/helm.sh version >/dev/null

# promtool built from the Prometheus Go module at the version pinned in scripts/promtool.sh; cached likewise.
promtool-bin: system-deps
	@./scripts/promtool.sh --version >/dev/null

venv: $(STAMP)

$(STAMP): pyproject.toml devtools/pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The operator with its test and lint tools, then the development package (fake cloud, local stack).
	$(BIN)/pip install --quiet -e '.[dev]' -e ./devtools
	touch $@

system-deps:
	@./scripts/system-deps.sh

# The per-object benchmarks, then the scale run (paired run against a direct client, 5,000 objects, a
# restart, memory over resyncs); about 25 minutes in all. SCALE_ARGS='--no-many' skips the 5,000 objects
# (`make bench-scale` runs the scale part alone; see `python -m benchmarks.scale --help`).
bench: venv controlplane-bin
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

bench-scale: venv controlplane-bin
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

# What each credentials Secret in use costs (its watch): memory, tasks, sockets, reads, a change's delay.
bench-watches: venv controlplane-bin
	$(BIN)/python -m benchmarks.watches

# The operator killed at random instants while 50 DesktopImages converge and are deleted.
# CHAOS_ARGS='--seed N' reproduces a kill schedule; see `python -m benchmarks.chaos --help`.
bench-chaos: venv controlplane-bin
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info reports
