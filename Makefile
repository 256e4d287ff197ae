# Two commands on a fresh machine (Python 3.11):
#   make demo   install into .venv, start the embedded PostgreSQL, run studies/quickstart.toml
#   make test   install into .venv (with dev tools, a headless browser, SLURM and PgBouncer),
#               lint, type-check, test; the door's conformance test on the lowest Optuna too
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CIFAR-10 for machines without network: the shared JPEG export when it is there, else
# torchvision downloads the official batches into the per-user cache.
DATA   ?= $(or $(SWEEPER_DATA),$(wildcard ../shared/data/cifar10-jpeg.tar.gz))

.PHONY: install demo test lint typecheck pytest browser cluster-tools clean gpu-check door-compat

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

# The door's conformance test (and the layout test) on the lowest Optuna pyproject.toml allows;
# `pytest` runs them on the installed one, the newest allowed. That Optuna alone goes into a
# folder put first on the path: the venv's other packages serve both runs.
DOOR_OPTUNA ?= 5.0.0
DOOR_DIR    := .door-compat/optuna-$(DOOR_OPTUNA)
$(DOOR_DIR)/.installed: pyproject.toml
	$(BIN)/python -m pip install --quiet --no-deps --target $(DOOR_DIR) optuna==$(DOOR_OPTUNA)
	touch $@

door-compat: install $(DOOR_DIR)/.installed
	test "$$(PYTHONPATH=$(DOOR_DIR) $(BIN)/python -c 'import optuna; print(optuna.__version__)')" = $(DOOR_OPTUNA)
	PYTHONPATH=$(DOOR_DIR) $(BIN)/pytest -q tests/test_optuna_door.py tests/test_layout.py

test: lint typecheck pytest door-compat

# The whole GPU check (tests, optimizer step, throughput, a full epoch) as one command; it
# needs only torch with CUDA, triton, torchvision, numpy and pytest (no venv, no database),
# and reads CIFAR-10 from .data/ inside the checkout, copied here from ../shared when present.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	@if [ ! -f .data/cifar10-jpeg.tar.gz ] && [ -f ../shared/data/cifar10-jpeg.tar.gz ]; then \
		mkdir -p .data && cp ../shared/data/cifar10-jpeg.tar.gz .data/; fi
	@PYTHONPATH=. $(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts .door-compat
