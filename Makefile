# Two commands for newcomers: `make chat` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs; pip caches the llama.cpp build, so only the
# very first install compiles it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: chat test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

chat: $(VENV)/.installed-local
	$(BIN)/openrouter-voice chat $(ARGS)

test: $(VENV)/.installed-dev,local
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev,local
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-bench,local
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV)
