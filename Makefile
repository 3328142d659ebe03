# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: run test lint format fuzz bench instructions soak clean lock lock-check

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

LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --generate-hashes \
	--custom-compile-command "make lock" --quiet

## lock: pin the runtime dependencies of pyproject.toml, with hashes, in requirements.lock (the image installs it)
lock: $(DEV)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock

## lock-check: fail if requirements.lock is not what `make lock` makes of pyproject.toml (keeping its pins)
lock-check: $(DEV)
	@tmp=$$(mktemp -d) && cp requirements.lock $$tmp/requirements.lock && \
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o $$tmp/requirements.lock && \
	diff -u requirements.lock $$tmp/requirements.lock && rm -r $$tmp && \
	echo "requirements.lock is current"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

## fuzz: schemathesis against a freshly started service's OpenAPI document (2.5 minutes)
fuzz: $(DEV)
	$(BIN)/python -m scripts.fuzz --max-time 150

## bench: wrk against the API and a bare Sanic endpoint; writes bench/RESULTS.md (about 10 minutes);
## RUNS=5 for more rounds (3), BASELINE=<git revision> to compare scenarios 1-3 with its service
bench: $(RUNTIME)
	@for tool in wrk redis-server redis-cli; do command -v $$tool >/dev/null || \
	  { echo "make bench needs $$tool: apt-get install wrk redis-server"; exit 1; }; done
	$(BIN)/python -m bench.run_bench $(if $(RUNS),--runs $(RUNS)) $(if $(BASELINE),--baseline $(BASELINE))

## instructions: CPU instructions per request under callgrind, for git revisions REVS (default: this tree);
## WORKERS=2 counts the service with 2 workers (all its processes)
instructions: $(RUNTIME)
	$(BIN)/python -m bench.instructions $(if $(WORKERS),--workers $(WORKERS)) $(REVS)

## soak: steady load for SOAK_MINUTES (20) on one Redis and a cluster, with faults; writes bench/SOAK.md
soak: $(DEV)
	@for tool in redis-server redis-cli; do command -v $$tool >/dev/null || \
	  { echo "make soak needs $$tool: apt-get install redis-server"; exit 1; }; done
	$(BIN)/python -m bench.soak
