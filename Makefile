# `make demo` runs shardrun on the bundled example suites; `make test` runs the tests.
# Each creates (once) its own virtualenv in .venv, so a fresh machine needs only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo demo-pytest test bench clean

$(BIN)/shardrun: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/shardrun

# The RSpec example when rspec is installed, else the pytest one; private Redis, 4 workers.
demo: $(BIN)/shardrun
	@if command -v rspec >/dev/null 2>&1; then \
	  echo "shardrun run spec --workers 4   (in examples/rspec)"; \
	  cd examples/rspec && ../../$(BIN)/shardrun run spec --workers 4; \
	else \
	  echo "rspec not installed: running the pytest example instead"; \
	  echo "shardrun run tests --workers 4   (in examples/pytest)"; \
	  cd examples/pytest && ../../$(BIN)/shardrun run tests --workers 4; \
	fi

demo-pytest: $(BIN)/shardrun
	cd examples/pytest && ../../$(BIN)/shardrun run tests --workers 4

test: $(BIN)/shardrun
	$(BIN)/ruff check .
	$(BIN)/pytest

bench: $(BIN)/shardrun
	$(BIN)/python bench/plan_quality.py --write docs/benchmarks.md
	$(BIN)/python bench/plan_scale.py --write docs/benchmarks.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
