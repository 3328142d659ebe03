# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The virtualenv's own pip (the one Python ships), never an upgrade fetched on the day.
PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: help run test test-fast lint format fuzz bench instructions soak clean lock lock-check upgrade

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the versions of the locks, with their hashes: a release on PyPI changes nothing here.
$(RUNTIME): $(LOCK) | $(BIN)/python
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	touch $@

$(DEV): $(DEV_LOCK) | $(BIN)/python
	$(PIP) install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	touch $@ $(RUNTIME)

## run: install the runtime lock and start the API on $HOST:$PORT (default 127.0.0.1:8000)
run: $(RUNTIME)
	$(BIN)/python run.py

## test: install the dev lock and run the whole suite (about 9 minutes here)
test: $(DEV)
	$(BIN)/python -m pytest

## test-fast: the suite on fakeredis only, on both cores, without redis-server, services or
##            browsers: the edit-test loop (under a minute here)
test-fast: $(DEV)
	$(BIN)/python -m pytest -m "not redis_server and not browser" -q -n 2

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
# The dev lock is resolved under the runtime lock: both pin every shared package alike.
COMPILE_RUNTIME = $(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS)
COMPILE_DEV = $(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS)

## lock: pin what pyproject.toml's ranges allow, with hashes, keeping the pins already there:
##       requirements.lock (the runtime: make run and the image) and requirements-dev.lock (the rest)
lock: $(DEV)
	$(COMPILE_RUNTIME) -o $(LOCK)
	$(COMPILE_DEV) -c $(LOCK) -o $(DEV_LOCK)

## lock-check: fail if either lock is not what `make lock` makes of pyproject.toml (CI runs it)
lock-check: $(DEV)
	@tmp=$$(mktemp -d) && cp $(LOCK) $(DEV_LOCK) $$tmp/ && \
	$(COMPILE_RUNTIME) -o $$tmp/$(LOCK) && diff -u $(LOCK) $$tmp/$(LOCK) && \
	$(COMPILE_DEV) -c $(LOCK) -o $$tmp/$(DEV_LOCK) && diff -u $(DEV_LOCK) $$tmp/$(DEV_LOCK) && \
	rm -r $$tmp && echo "$(LOCK) and $(DEV_LOCK) are current"

## upgrade: re-resolve both locks to the newest versions the ranges allow, install them, run the suite
upgrade: $(DEV)
	$(COMPILE_RUNTIME) --upgrade -o $(LOCK)
	$(COMPILE_DEV) -c $(LOCK) --upgrade -o $(DEV_LOCK)
	$(MAKE) test

## clean: remove the virtualenv and the caches
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

## fuzz: schemathesis against a freshly started service's OpenAPI document (2.5 minutes)
fuzz: $(DEV)
	$(BIN)/python -m scripts.fuzz --max-time 150

## bench: wrk and live streams against the API and a bare Sanic endpoint; writes bench/RESULTS.md (about 15 minutes);
## RUNS=5 for more rounds (3), BASELINE=<git revision> to compare scenarios 1-3 with its service
bench: $(RUNTIME)
	@for tool in wrk redis-server redis-cli curl; do command -v $$tool >/dev/null || \
	  { echo "make bench needs $$tool: apt-get install wrk redis-server curl"; exit 1; }; done
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
