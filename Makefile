# One target per habit. `make run` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: running needs the service's dependencies only; tests, lint and typecheck add the dev
# extra (pytest, mypy, moto, playwright, schemathesis: most of a dev venv's size).
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# torch comes first and only as a CPU build (plain PyPI would hand Linux a multi-GB CUDA build), without
# its dependencies (they come with the project's, from pip's configured index): a wheel pip finds
# without an index (find-links) if there is one, otherwise from TORCH_INDEX_URL, which you set to
# PyTorch's CPU wheel index. No host is named here: every other package comes from pip's own index.
TORCH := torch==2.13.0
TORCH_INDEX_URL ?=

.PHONY: install install-runtime run test test-fast lint typecheck bench bench-extras clean

# `make install` is the development install; `make run` needs only install-runtime.
install: $(DEV_STAMP)

install-runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-index --no-deps "$(TORCH)" \
	  || { test -n "$(TORCH_INDEX_URL)" || { echo "no local $(TORCH) wheel: set TORCH_INDEX_URL to PyTorch's CPU wheel index" >&2; exit 1; }; \
	       $(BIN)/python -m pip install --no-deps --index-url "$(TORCH_INDEX_URL)" "$(TORCH)"; }
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

# Every script in bench/ at a quick size, one after the other (bench/run_all.py; BENCH_ARGS="--only
# ingest folding" for some). A script whose data (../shared/data), tool (wrk) or peer is missing is
# skipped with the reason; run `make bench-extras` first to include the peers. Full-size commands and
# the figures they gave: docs/benchmarks.md.
bench: install
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

# Peers for side-by-side benchmarks; never runtime dependencies. LightFM 1.17's setup.py imports
# itself while building and fails as a PEP 517 build with today's setuptools: a legacy build without
# isolation works (checked 2026-12-07); --no-deps keeps it from pulling anything the benches do not use.
bench-extras: install
	$(BIN)/python -m pip install "implicit==0.7.3" "threadpoolctl==3.8.0" setuptools wheel
	$(BIN)/python -m pip install --no-deps --no-build-isolation --no-use-pep517 "lightfm==1.17"

clean:
	rm -rf $(VENV) var .pytest_cache
