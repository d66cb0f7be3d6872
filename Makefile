# The two quick-start commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-rewrite

$(BIN)/arktrack: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . --group dev
	touch $@

demo: $(BIN)/arktrack
	$(BIN)/arktrack demo

lint: $(BIN)/arktrack
	$(BIN)/ruff check src tests integrations bench
	$(BIN)/ruff format --check src tests integrations bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(BIN)/arktrack
	$(BIN)/python bench/http_bench.py

bench-rewrite: $(BIN)/arktrack
	$(BIN)/python -m pip install -q --group bench
	$(BIN)/python bench/rewrite_bench.py
