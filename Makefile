# Set-up and the two everyday commands. `make study` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# CPU machines here take the torch 2.13.0 wheel on disk; elsewhere pip picks the build for the
# platform (CUDA on Linux GPUs). Override e.g. TORCH="torch==2.13.0 --index-url <your index>".
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: study test lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

study: setup
	$(BIN)/ecgscale study $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
