# Two commands: `make run` (the app) and `make test` (the whole suite). Both create .venv when missing and install
# the exact versions in requirements.lock / requirements-test.lock (`make lock` refreshes them).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CNN_DATA_DIR ?= $(if $(wildcard ../shared/datasets),../shared/datasets,data)
PORT ?= 8501
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11

.PHONY: run test e2e bench lint lock lock-check clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.lock | $(BIN)/python
	$(BIN)/pip install -q -r requirements.lock
	touch $@

$(VENV)/.installed-test: requirements-test.lock $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-test.lock
	touch $@

run: $(VENV)/.installed
	$(BIN)/python scripts/serve.py --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# only the browser tests (they install Debian's chromium when it is missing); screenshots in test-artifacts/
e2e: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m e2e

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run

# Refresh the locks from the loose requirements (newest versions they allow), then prove them: a fresh venv
# installs the test lock and runs the layer contract and the fast tests.
lock: $(VENV)/.installed-test
	$(UV_COMPILE) --upgrade requirements.txt -o requirements.lock
	$(UV_COMPILE) --upgrade requirements.txt requirements-test.txt -c requirements.lock -o requirements-test.lock
	$(MAKE) lock-check

lock-check:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -r requirements-test.lock
	.venv-lock/bin/lint-imports
	.venv-lock/bin/python -m pytest -q -m "not slow and not e2e" -p no:cacheprovider
	rm -rf .venv-lock

clean-venv:
	rm -rf $(VENV)
