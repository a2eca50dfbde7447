# The two set-up commands of README.md: `make run` (install, run the default pipeline) and
# `make test` (install, run the tests). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
CORES ?= all
PARAMS ?= params/default.yaml

# Offline by design: no DVC analytics or update checks.
export DVC_NO_ANALYTICS := 1
export DVC_NO_UPDATE_CHECK := 1
export PATH := $(BIN):$(PATH)

.PHONY: install run pilot oracle test test-all bench gpu-check repro pull report lint dag clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,slurm]'
	touch $@

install: $(STAMP)

run: $(STAMP)  ## the default pipeline (params/default.yaml) with Snakemake
	$(BIN)/snakemake --cores $(CORES)

pilot: $(STAMP)  ## the evidence protocol's pilot (params/pilot.yaml): its runs and analysis/pilot.md
	$(BIN)/snakemake --cores $(CORES) --config params=params/pilot.yaml

oracle: $(STAMP)  ## issue 26's confirmatory test (params/oracle.yaml): its runs and analysis/oracle_resolution.md
	$(BIN)/snakemake --cores $(CORES) --config params=params/oracle.yaml

test: $(STAMP)  ## every unit test and one real Snakemake run of the smoke params (not the `full` tier)
	$(BIN)/python -m pytest -m "not full"

test-all: $(STAMP)  ## every test: also SLURM, DVC remotes and experiments, torchrun, end-to-end presets (CI)
	$(BIN)/python -m pytest

bench: $(STAMP)  ## speed goals (pytest-benchmark)
	$(BIN)/python -m pytest -o addopts="" -s --benchmark-only --benchmark-columns=min,median,mean,rounds benchmarks

gpu-check: $(STAMP)  ## a lent GPU's acceptance check, <= 8 min: throughput, loss, sampling + FID (benchmarks/gpu_check.py)
	$(BIN)/python benchmarks/gpu_check.py

repro: $(STAMP)  ## the same pipeline with DVC (regenerates dvc.yaml from the params first)
	$(BIN)/ctcoupling dag --params params/default.yaml
	$(BIN)/dvc repro

pull: $(STAMP)  ## a clone's artifacts from the DVC remote (docs/cluster.md), up to date for Snakemake too
	$(BIN)/dvc pull
	$(BIN)/snakemake --touch --cores 1 --quiet all --config params=$(PARAMS)

report: $(STAMP)  ## the Snakemake report of the last run: report.html (every analysis/ figure and table, captioned)
	$(BIN)/snakemake --report report.html --config params=$(PARAMS)

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/ctcoupling dag --check

clean:  ## outputs that are not committed (data/, runs/, logs/); analysis/ stays
	rm -rf data runs logs .snakemake
