# Two entry points: `make run` serves the API and widget, `make test` runs the whole suite.
# Both create .venv on first use and reinstall only when pyproject.toml changes; `make test` installs
# the test and ray extras (the Ray tests start and stop a local cluster themselves).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
HOST ?= 127.0.0.1
PORT ?= 8000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test index browser clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	@touch $(STAMP) $@

index: $(STAMP)
	$(BIN)/rag index

run: $(STAMP)
	$(BIN)/rag serve --host $(HOST) --port $(PORT) --build-if-missing

browser:
	@sh tests/ensure_chromium.sh

test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .rag-index .rag-index.builds .rag-cache artifacts
