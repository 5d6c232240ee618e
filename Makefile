# One target per habit. `make run` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: running needs the service's dependencies only; tests, lint and typecheck add the dev
# extra (pytest, mypy, moto, playwright, schemathesis: most of a dev venv's size).
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# torch comes first and only as a CPU build: a local wheel if pip's find-links has one (its
# dependencies then come from PyPI with the project), otherwise PyTorch's CPU index.
# Plain PyPI would hand Linux a multi-GB CUDA build.
TORCH := torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install install-runtime run test test-fast lint typecheck bench bench-extras clean

# `make install` is the development install; `make run` needs only install-runtime.
install: $(DEV_STAMP)

install-runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-index --no-deps "$(TORCH)" \
	  || $(BIN)/python -m pip install "$(TORCH)" --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple
	$(BIN)/python -m pip install -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(DEV_STAMP)

run: install-runtime
	$(BIN)/unfold up

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/pytest tests/recsys tests/ingestion

lint: install
	$(BIN)/ruff check app workers migrations tests bench
	$(BIN)/ruff format --check app workers tests bench

typecheck: install
	$(BIN)/mypy app workers

bench: install
	$(BIN)/python bench/ingest.py

# Peers for side-by-side benchmarks; never runtime dependencies. LightFM's setup.py needs
# --no-build-isolation (it imports itself while building).
bench-extras: install
	$(BIN)/python -m pip install "implicit==0.7.3" "threadpoolctl==3.8.0" setuptools wheel
	$(BIN)/python -m pip install --no-build-isolation "lightfm==1.17"

clean:
	rm -rf $(VENV) var .pytest_cache
