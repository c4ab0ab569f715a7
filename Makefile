# One-command setup, demo and tests. Everything runs inside .venv, built from
# requirements.lock; nothing installed by hand is used.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake
# Which torch build `setup` installs. auto: the CUDA build where `nvidia-smi -L` lists a GPU,
# else the CPU wheel. cu130: PyPI's CUDA 13.0 build with the runtime wheels pinned in
# requirements-cuda.lock (NVIDIA driver >= 580). cu126, cu128, ...: that CUDA 12 build from
# PyTorch's own index, for older drivers (not locked: its runtime wheels come from that index).
# cpu: never CUDA.
CUDA ?= auto
TORCH_INDEX ?= https://download.pytorch.org/whl
# The venv is rebuilt only when these files or the build change (their hash is kept in the stamp).
LOCK_INPUTS := requirements.lock requirements-cuda.lock pyproject.toml
STAMP := $(VENV)/.setup-hash
DRIVER_VENV := .venv-driver

.PHONY: setup driver demo report test bench lint dryrun-preset rulegraph lock lock-cuda lock-driver clean gpu-check gpu-check-bundle kaggle-wheels kaggle-bundle docs

setup:
	@build=$(CUDA); \
	if [ "$$build" = auto ]; then build=cpu; nvidia-smi -L >/dev/null 2>&1 && build=cu130; fi; \
	hash=$$( (cat $(LOCK_INPUTS); echo "$$build") | sha256sum | cut -d' ' -f1); \
	if [ -f $(STAMP) ] && [ "$$(cat $(STAMP))" = "$$hash" ]; then \
		echo "setup: $(VENV) is up to date with requirements.lock ($$build)"; \
	else \
		set -e; start=$$(date +%s); \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV); \
		case $$build in \
			cpu) $(BIN)/pip install --quiet -r requirements.lock ;; \
			cu130) $(BIN)/pip install --quiet -r requirements.lock -r requirements-cuda.lock ;; \
			*) $(BIN)/pip install --quiet -r requirements.lock --extra-index-url $(TORCH_INDEX)/$$build \
				"torch==$$(sed -n 's/^torch==//p' requirements.lock)+$$build" ;; \
		esac; \
		$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .; \
		$(BIN)/pip check; \
		$(BIN)/python -m arena_distill.gpu.cuda_report "$$build"; \
		echo "$$hash" > $(STAMP); \
		echo "setup: built $(VENV) ($$build) in $$(( $$(date +%s) - start )) s"; \
	fi

# The SLURM driver environment: Snakemake and the executor plugin 2.7.1 only, which the job
# environment cannot hold (numpy; see requirements.in). A Snakemake started from it may run
# inside an sbatch/salloc allocation; its jobs still run in .venv (docs/cluster.md, "Where the driver runs").
driver:
	@hash=$$(cat requirements-driver.lock | sha256sum | cut -d' ' -f1); \
	if [ -f $(DRIVER_VENV)/.setup-hash ] && [ "$$(cat $(DRIVER_VENV)/.setup-hash)" = "$$hash" ]; then \
		echo "driver: $(DRIVER_VENV) is up to date with requirements-driver.lock"; \
	else \
		set -e; start=$$(date +%s); \
		rm -rf $(DRIVER_VENV); \
		$(PYTHON) -m venv $(DRIVER_VENV); \
		$(DRIVER_VENV)/bin/pip install --quiet -r requirements-driver.lock; \
		$(DRIVER_VENV)/bin/pip check; \
		echo "$$hash" > $(DRIVER_VENV)/.setup-hash; \
		echo "driver: built $(DRIVER_VENV) in $$(( $$(date +%s) - start )) s"; \
	fi

demo: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(SNAKEMAKE) --profile profiles/local --cores $(CORES) all

# The wheels the Kaggle image lacks for the served model, for Python 3.12 (needs PyPI; once).
KAGGLE_WHEELHOUSE ?= .kaggle-wheels
kaggle-wheels: setup
	$(BIN)/python -m arena_distill.export.kaggle_wheels $(KAGGLE_WHEELHOUSE) --python312 $(PYTHON312)

# results/kaggle: the demo's model, code and wheels for a Kaggle notebook without internet.
kaggle-bundle: setup kaggle-wheels
	PATH=$(CURDIR)/$(BIN):$$PATH $(SNAKEMAKE) --profile profiles/local --cores $(CORES) kaggle_bundle

# The Snakemake report of the demo's run: figures with captions, runtimes, the rule graph.
report: demo
	PATH=$(CURDIR)/$(BIN):$$PATH $(SNAKEMAKE) --profile profiles/local --report results/report.html all
	@echo "wrote results/report.html"

# Speed of the embedded default, as ratios against baselines measured in the same run.
bench: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m arena_distill.bench --out results/bench

lint: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(SNAKEMAKE) --lint
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mkdocs build --strict --quiet

# The documentation (docs/, mkdocs.yml) served at http://127.0.0.1:8000 while you edit it.
docs: setup
	$(BIN)/mkdocs serve

test: setup driver lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest --durations=20

# The preset's DAG without the competition data (placeholders in a temporary copy);
# ARGS go to snakemake, e.g. make dryrun-preset ARGS="--profile profiles/slurm submission".
dryrun-preset: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m arena_distill.workflow.dryrun_preset $(ARGS)

# The rule graph as Mermaid text (renders on GitHub and mermaid.live; no graphviz needed).
rulegraph: setup
	mkdir -p results
	PATH=$(CURDIR)/$(BIN):$$PATH $(SNAKEMAKE) --rulegraph mermaid-js all > results/rulegraph.mmd
	@echo "wrote results/rulegraph.mmd"

# Re-resolve requirements.in into requirements.lock (needs the registries).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements.in
	.lock-venv/bin/pip check
	( echo "# Generated by 'make lock' from requirements.in; do not edit by hand."; \
	  .lock-venv/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' ) > requirements.lock
	rm -rf .lock-venv

# Re-resolve requirements-driver.in into requirements-driver.lock.
lock-driver:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -r requirements-driver.in
	.lock-venv/bin/pip check
	( echo "# Generated by 'make lock-driver' from requirements-driver.in; do not edit by hand."; \
	  .lock-venv/bin/pip freeze ) > requirements-driver.lock
	rm -rf .lock-venv

# Re-resolve requirements-cuda.lock: the CUDA wheels PyPI's torch pulls on Linux x86_64
# (from PyPI's metadata; no wheel is downloaded).
lock-cuda: setup
	$(BIN)/python tools/lock_cuda.py > requirements-cuda.lock.tmp && mv requirements-cuda.lock.tmp requirements-cuda.lock

clean:
	rm -rf results .snakemake

# GPU smoke test and benchmark (docs/gpu.md). No venv and no registry needed: it runs
# with the machine's Python and CUDA torch; what that machine lacks (Snakemake, GPTQModel,
# optimum, bitsandbytes) comes from $(GPU_BUNDLE), built here by gpu-check-bundle.
GPU_PYTHON ?= python3
GPU_BUNDLE := .gpu-bundle
PYTHON312 ?= python3.12

gpu-check:
	PYTHONPATH=$(CURDIR)/src:$(CURDIR)/$(GPU_BUNDLE)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) -m arena_distill.gpu.check

gpu-check-bundle:
	PYTHONPATH=src $(PYTHON) -m arena_distill.gpu.bundle $(GPU_BUNDLE) --python312 $(PYTHON312)
