# drd: `make demo` and `make test` install what is missing, then run.
# As root on Debian they install restic (apt) and a .venv with drd and its test tools;
# as any other user they say, in one line, what to install.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.drd-installed
PYTEST_ARGS ?=
# test processes for `make test` (pytest-xdist); each module's tests stay in one, so that
# a module's servers and stages are made once
TEST_WORKERS ?= 2

.PHONY: all deps system-deps demo test test-unit test-integration lint bench clean

all: test

deps: system-deps $(STAMP)

system-deps:
	@scripts/ensure-system-deps

$(STAMP): setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

demo: deps
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/demo

test: deps
	@scripts/ensure-system-deps --test
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: deps
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: deps
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: deps
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
