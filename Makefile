# `make demo` runs shardrun on the bundled example suites; `make test` runs the tests.
# Each creates (once) its own virtualenv in .venv, so a fresh machine needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/shardrun: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/shardrun

demo: $(BIN)/shardrun
	cd examples/rspec && ../../$(BIN)/shardrun plan spec --workers 4 --timings .shardrun/timings.json

test: $(BIN)/shardrun
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(BIN)/shardrun
	$(BIN)/python bench/plan_quality.py
	$(BIN)/python bench/plan_scale.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
