#!/usr/bin/env bash
# Run by `snakemake --use-conda` inside the new env, from the workflow's working directory
# (the repository root): install this checkout's ctcoupling into it, without touching the pins.
set -euo pipefail
python -m pip install --no-deps -e .
