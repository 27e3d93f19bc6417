# k8py: `make test` installs what the tests need and runs them all (what CI runs).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install deps test lint unit bench

install:
	$(PIP) install -q -e .

deps:
	sh scripts/install-node-deps.sh
	$(PIP) install -q --root-user-action=ignore -e '.[test]'

lint: deps
	$(PYTHON) -m ruff check k8py tests bench

test: deps lint
	$(PYTHON) -m pytest -q -ra --durations=15

bench: install
	$(PYTHON) bench/store_commit.py
	$(PYTHON) bench/api_create.py
	$(PYTHON) bench/scheduler_throughput.py
	$(PYTHON) bench/deployment_scale.py
