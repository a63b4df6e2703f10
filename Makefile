# Two commands: `make run` (the app) and `make test` (the whole suite). Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CNN_DATA_DIR ?= $(if $(wildcard ../shared/datasets),../shared/datasets,data)
PORT ?= 8501

.PHONY: run test e2e bench lint clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

# only the browser tests (they install Debian's chromium when it is missing); screenshots in test-artifacts/
e2e: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m e2e

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run

clean-venv:
	rm -rf $(VENV)
