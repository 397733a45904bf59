# Two entry points: `make run` serves the API and widget, `make test` runs the whole suite.
# Both install from the committed lock (uv.lock) with uv, itself installed pinned from the package
# registry into .tools/; nothing is resolved at install time. They reinstall only when pyproject.toml or
# uv.lock changes. `make test` installs the test and ray extras (the Ray tests start and stop a local
# cluster themselves). `make lock` refreshes the lock after a change to pyproject.toml.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
HOST ?= 127.0.0.1
PORT ?= 8000

# The lock tool: one pinned release, in a venv of its own so that syncing .venv never removes it.
UV_VERSION := 0.13.10
TOOLS := .tools
UV := $(TOOLS)/bin/uv

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# uv installs into $(VENV), never downloads a Python, and reads nothing but the lock.
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: run test index browser redis docs lock lock-check reader clean

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# --frozen: install exactly what uv.lock says, without resolving; `make lock-check` tells whether the
# lock still matches pyproject.toml. `make run` keeps packages it did not install (--inexact), so a
# test environment stays whole; `make test` syncs exactly. Bytecode is compiled once at install
# (~30 s): uv does not by default, and where PYTHONDONTWRITEBYTECODE is set every process would
# otherwise compile PyTorch, transformers and Ray again (an import of them: 19 s -> 8 s).
export UV_COMPILE_BYTECODE := 1
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet --inexact --python $(PYTHON)
	@touch $@

$(TEST_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet --extra test --extra ray --extra docs --python $(PYTHON)
	@touch $(STAMP) $@

index: $(STAMP)
	$(BIN)/rag index

run: $(STAMP)
	$(BIN)/rag serve --host $(HOST) --port $(PORT) --build-if-missing

# The documentation site, offline, into site/ (strict: a broken link or a page missing from the nav fails).
docs: | $(UV)
	$(UV) sync --frozen --quiet --inexact --extra docs --python $(PYTHON)
	$(BIN)/mkdocs build --strict

browser:
	@sh tests/ensure_chromium.sh

redis:
	@sh tests/ensure_redis.sh

test: $(TEST_STAMP) browser redis
	$(BIN)/python -m pytest

# Train the reader again from the shared data and bundle it (about 80 minutes on 2 cores; the model card,
# reader.json and curve.json say what it measured). SQUAD= points at another copy of the data.
SQUAD ?= ../shared/datasets/squad2-dev-train.json
READER_RUN ?= .reader-run
reader: $(STAMP)
	$(BIN)/rag train-reader --squad $(SQUAD) --output $(READER_RUN)
	rm -rf rag/answer/models/reader && cp -r $(READER_RUN)/model rag/answer/models/reader

# Resolve pyproject.toml again and rewrite uv.lock (the only step that resolves).
lock: | $(UV)
	$(UV) lock --python $(PYTHON)

# Fails with one line when uv.lock no longer matches pyproject.toml.
lock-check: | $(UV)
	@$(UV) lock --check --quiet --python $(PYTHON) 2>/dev/null || { echo "error: uv.lock does not match pyproject.toml; run 'make lock' and commit uv.lock"; exit 1; }

clean:
	rm -rf $(VENV) $(TOOLS) .rag-index .rag-index.builds .rag-cache artifacts site
