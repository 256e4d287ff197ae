# Two commands on a fresh machine (Python 3.11):
#   make demo   install into .venv, start the embedded PostgreSQL, run studies/quickstart.toml
#   make test   install into .venv (with dev tools, a headless browser, SLURM and PgBouncer),
#               lint, type-check, test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CIFAR-10 for machines without network: the shared JPEG export when it is there, else
# torchvision downloads the official batches into the per-user cache.
DATA   ?= $(or $(SWEEPER_DATA),$(wildcard ../shared/data/cifar10-jpeg.tar.gz))

.PHONY: install demo test lint typecheck pytest browser cluster-tools clean gpu-check

$(BIN)/sweeper: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/sweeper

demo: install
	$(BIN)/sweeper run studies/quickstart.toml $(if $(DATA),--data $(DATA))
	$(BIN)/sweeper best --study quickstart

browser:
	bash scripts/ensure-chromium.sh

# The real SLURM, MUNGE and PgBouncer the cluster tests start (Debian packages).
cluster-tools:
	bash scripts/ensure-cluster-tools.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install browser cluster-tools
	$(BIN)/pytest

test: lint typecheck pytest

# The whole GPU check (tests, optimizer step, throughput, a full epoch) as one command; it
# needs only torch with CUDA, triton, torchvision, numpy and pytest (no venv, no database),
# and reads CIFAR-10 from .data/ inside the checkout, copied here from ../shared when present.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	@if [ ! -f .data/cifar10-jpeg.tar.gz ] && [ -f ../shared/data/cifar10-jpeg.tar.gz ]; then \
		mkdir -p .data && cp ../shared/data/cifar10-jpeg.tar.gz .data/; fi
	@PYTHONPATH=. $(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts
