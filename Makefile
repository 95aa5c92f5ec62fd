# Everything runs from .venv, which `make install` creates and keeps up to date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPAT := .venv-compat
COMPAT_STAMP := $(COMPAT)/.installed

.PHONY: install demo test lint types unit bench compat clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/omics-batch-runs export --emulator -o demo-runs.jsonl
	@echo "--- first runs of demo-runs.jsonl ---"
	@head -n 3 demo-runs.jsonl

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint types unit

bench: install
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

# The same suite beside aioboto3 15.5.0, which pins aiobotocore 2.25 and an older botocore.
$(COMPAT_STAMP): pyproject.toml
	@test -x $(COMPAT)/bin/python || $(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT)/bin/python -m pip install --quiet -e '.[test]' 'aioboto3==15.5.0'
	@touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)
	$(COMPAT)/bin/python -c 'import aioboto3, aiobotocore, botocore; print("compat: aioboto3", aioboto3.__version__, "aiobotocore", aiobotocore.__version__, "botocore", botocore.__version__)'
	$(COMPAT)/bin/pytest -p no:cacheprovider

clean:
	rm -rf $(VENV) $(COMPAT) .pytest_cache .mypy_cache .ruff_cache .hypothesis
