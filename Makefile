# `make run`: set up .venv if needed, then train, evaluate and report the default recipe.
# `make test`: set up .venv with the dev extras if needed, then ruff, mypy and pytest.
# `make test-fast`: the same without the tests marked slow (training, torchrun, notebook, browser).
# Both are idempotent: the install step re-runs only when pyproject.toml changes.

VENV := .venv
BIN := $(VENV)/bin
# Developers of digitlab keep MNIST beside the project; users get it downloaded to ~/.cache.
DIGITLAB_DATA ?= $(wildcard ../shared/data/mnist)
export DIGITLAB_DATA

.PHONY: run test test-fast lint bench clean

run: $(VENV)/.installed
	$(BIN)/digitlab train --recipe default

test: $(VENV)/.installed-dev lint
	$(BIN)/pytest

test-fast: $(VENV)/.installed-dev lint
	$(BIN)/pytest -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench scripts tools
	$(BIN)/ruff format --check src tests bench scripts tools
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/recipes.py

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
