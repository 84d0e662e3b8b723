# make demo: set up and run the example YAML pipelines on SQLite.  make test: the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WFE_TEST_DB ?= memory,sqlite,postgres,postgres+valkey

.PHONY: setup demo demo-python test lint typecheck check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"

demo: setup
	rm -f wfe-demo.db wfe-demo.db-wal wfe-demo.db-shm
	$(BIN)/wfe run examples/pipelines/code-stats.yaml --db sqlite:///wfe-demo.db --input folder=wfe_core
	$(BIN)/wfe run examples/pipelines/release-notes.yaml --db sqlite:///wfe-demo.db --input version=0.1.0

demo-python: setup
	rm -f wfe-demo.db wfe-demo.db-wal wfe-demo.db-shm
	$(BIN)/python examples/orders.py --db sqlite:///wfe-demo.db

test: setup
	$(BIN)/python -m pytest -q --wfe-db=$(WFE_TEST_DB)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check wfe wfe_core wfe_sql wfe_sqlite wfe_postgres wfe_yaml wfe_valkey

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache wfe-demo.db* build

# make bench: wfe vs DBOS side by side, results appended to benchmarks/RESULTS.md
# (benchmarks/README.md); BENCH_ARGS adds runner options, e.g. BENCH_ARGS="--reps 5".
.PHONY: bench
bench: setup
	$(BIN)/python -m benchmarks.run --results benchmarks/RESULTS.md $(BENCH_ARGS)
