# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# fhirpy's live-server suites run in a venv of their own, pinned (tests/integration/test_fhirpy_suite.py)
PEER_VENV := .peer-venvs/fhirpy
PEER_STAMP := $(PEER_VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(PEER_STAMP): tests/peer/fhirpy-requirements.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/pip install --quiet -r tests/peer/fhirpy-requirements.txt
	touch $(PEER_STAMP)

run: $(STAMP)
	$(BIN)/telefhir serve --no-auth --db sqlite:///var/telefhir.db

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint $(PEER_STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .peer-venvs var .pytest_cache .mypy_cache .ruff_cache
