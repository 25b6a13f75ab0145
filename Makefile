# shortsci_bench: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_STAMP := data/.mnist/.mirror-stamp.json
export PYTHONUNBUFFERED := 1
export WANDB_MODE ?= offline

.PHONY: help install data test test-slow lint format demo bench report report-check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# TORCH_INDEX: an optional package index for torch and torchvision, e.g. PyTorch's CPU-only
# wheels (`make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`): about 3 GB less
# on a machine without a GPU. Not exercised by CI, whose machines reach PyPI only.
TORCH_INDEX ?=

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	@if [ -n "$(TORCH_INDEX)" ]; then \
	  $(BIN)/python -m pip install --index-url "$(TORCH_INDEX)" \
	    "$$(grep -o 'torch==[0-9.]*' pyproject.toml)" "$$(grep -o 'torchvision==[0-9.]*' pyproject.toml)"; \
	fi
	$(BIN)/python -m pip install -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install pinned dependencies (fast when nothing changed)

data: $(STAMP) ## verify ../shared/data and unpack it into data/ (torchvision layouts)
	$(BIN)/python -m shortsci_bench.data.mirror

test: install data ## run the fast test suite (within ~10 min on 2 cores)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: install data ## run only the slow end-to-end checks (sweeps, Optuna, submitit, DDP)
	$(BIN)/python -m pytest -m slow -q

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install data ## run batchnorm_mnist at the quick tier (both arms, 3 seeds); print your verdicts, then the published ones
	$(BIN)/python -m shortsci_bench -m +experiment=batchnorm_mnist +sweep=claims tier=quick
	@echo "== Verdicts from YOUR runs (quick tier: claims about the paper's result are indicative) =="
	$(BIN)/python -m shortsci_bench.collect --experiment batchnorm_mnist --runs-only
	@echo "== Verdicts from the published records (experiments/batch_normalization/results/) =="
	$(BIN)/python -m shortsci_bench.collect --experiment batchnorm_mnist --runs experiments/batch_normalization/results
	@echo "Run records: $$(find runs/batchnorm_mnist -name result.json -path '*quick*' | sort | tr '\n' ' ')"

bench: install data ## print the benchmarks' ratios against their baselines
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/data.py
	@for b in bench/cifar_data.py bench/collect_bench.py bench/weightnorm_speed.py; do test -f $$b && $(BIN)/python $$b || true; done

report: install ## write report/index.html from all runs and published results
	$(BIN)/python -m shortsci_bench.collect --format html --out report/

report-check: report ## look at the report in headless Chromium at 1280 px (needs `apt-get install chromium`)
	$(BIN)/python -m shortsci_bench.report.browser report/

clean: ## remove runs/, report/ (not data/ or .venv/)
	rm -rf runs report
