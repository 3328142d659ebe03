# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run test lint format fuzz bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(RUNTIME)

## run: install and start the API on $HOST:$PORT (default 127.0.0.1:8000)
run: $(RUNTIME)
	$(BIN)/python run.py

## test: install the dev dependencies and run the whole suite
test: $(DEV)
	$(BIN)/python -m pytest

## lint: ruff (lint and format check) and mypy --strict
lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## format: apply ruff's fixes and formatting
format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

## fuzz: schemathesis against a freshly started service's OpenAPI document (2.5 minutes)
fuzz: $(DEV)
	$(BIN)/python scripts/fuzz.py --max-time 150

## bench: wrk against the API and a bare Sanic endpoint; writes bench/RESULTS.md (about 5 minutes)
bench: $(RUNTIME)
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server)
	$(BIN)/python bench/run_bench.py
