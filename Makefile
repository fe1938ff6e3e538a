# fleet developer and CI entry points. Every tool runs from .venv/bin explicitly.
# `make test` is what CI runs (through .ci/run): setup, lint, typecheck, then pytest.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fleet-installed
CODE   := $(wildcard fleet tests examples bench scripts)

.PHONY: setup venv lint typecheck test cluster-test demo bench clean

setup:
	bash scripts/setup.sh
	bash scripts/install-helm.sh
	$(MAKE) --no-print-directory venv

venv: $(STAMP)

# Reinstalled whenever pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,rabbitmq,mongo,monitor,bench,metrics,otel]'
	touch $@

lint: venv
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)

typecheck: venv
	$(BIN)/mypy --strict fleet

test: setup lint typecheck
	$(BIN)/pytest -n auto -p no:cacheprovider

# The 3-node RabbitMQ cluster e2e alone (it is part of `make test` too), with its figures.
cluster-test: setup
	$(BIN)/pytest -p no:cacheprovider -s tests/e2e/test_rabbitmq_cluster.py

demo:
	bash scripts/setup.sh demo
	$(MAKE) --no-print-directory venv
	$(BIN)/python -m examples.reports

bench: setup
	$(BIN)/python -m bench
	$(BIN)/python -m bench.monitor_list
	$(BIN)/python -m bench.monitor_indexes
	$(BIN)/python -m bench.monitor_worker
	$(BIN)/python -m bench.embedded_bounds

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache $(STAMP)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
