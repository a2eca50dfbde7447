# Params loading and validation, experiment expansion, input functions.
import json
import sys
from pathlib import Path

import yaml
from snakemake.utils import min_version, validate

min_version("9.0")

# The DAG itself comes from the package (ctcoupling.pipeline.dag); import it from this checkout.
# Jobs run `python -m ctcoupling` from the environment: the venv, or with --use-conda the env
# of workflow/envs/ctcoupling.yaml, whose post-deploy script installs this checkout into it.
sys.path.insert(0, str(Path(workflow.basedir, "src").resolve()))
from ctcoupling.config import params as P
from ctcoupling.pipeline import dag as L


PARAMS_FILE = config.get("params", "params/default.yaml")
with open(PARAMS_FILE) as f:
    PARAMS = yaml.safe_load(f)
validate(PARAMS, "../schemas/params.schema.yaml", set_default=False)
P.validate(PARAMS, PARAMS_FILE)  # cross-checks the names the grid uses
DATA_PARAMS_FILE = L.data_params_file(PARAMS, PARAMS_FILE)  # a study's: its suite's (shares data/)

EXPERIMENTS = {e.name: e for e in P.experiments(PARAMS)}
TRAINED_BY = P.trained_by(PARAMS)
THREADS = PARAMS["threads"]
CMD = L.CMD
ALL_OUTPUTS = L.all_outputs(PARAMS)


wildcard_constraints:
    dataset="|".join(PARAMS["datasets"]),  # exactly the data set names (digits, not digits_classifier)
    experiment="[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+-s[0-9]+",


def experiment_data(wildcards):
    return L.data_npz(EXPERIMENTS[wildcards.experiment].dataset)


def experiment_init(wildcards):
    """Checkpoints a run starts from (ECT's init, GC's frozen predictor): inputs like the data; and a
    run trained as another (the same training settings) copies that run's training."""
    return L.checkpoint_inputs(EXPERIMENTS[wildcards.experiment].config) + L.trainer_inputs(TRAINED_BY, wildcards.experiment)


def resolved(*sections):
    """A rule param holding the resolved settings a stage reads, so a params change re-runs it
    (and nothing else: training does not read the sample or evaluate settings)."""

    def get(wildcards):
        config = EXPERIMENTS[wildcards.experiment].config
        return json.dumps({s: config[s] for s in sections if s in config}, sort_keys=True)

    return get


def reported(paths):
    """Outputs marked for `snakemake --report`: each analysis/ figure and table with its caption
    (workflow/report/*.rst), its data set as category and its topic as subcategory
    (ctcoupling.pipeline.dag.report_entry); the records (JSON) stay out."""
    out = []
    for path in paths:
        entry = L.report_entry(PARAMS, path)
        out.append(path if entry is None else report(path, caption=f"../report/{entry['caption']}",
                                                     category=entry["category"], subcategory=entry["subcategory"]))
    return out


def theory_output(two_d):
    """The theory rule's outputs for the 2-D data sets (with Theorem 1) or for the image sets."""
    names = [ds for ds in L.theory_datasets(PARAMS) if P.is_2d(PARAMS, ds) == two_d]
    return reported(L.theory_files("{dataset,%s}" % ("|".join(names) or "(?!)"), two_d))


def experiment_config(wildcards):
    return EXPERIMENTS[wildcards.experiment].config


def processes(wildcards):
    """A train job's processes (train.gpus: torchrun's ranks)."""
    return experiment_config(wildcards)["train"]["gpus"]


def job_resources(stage):
    """A rule's cluster resources (memory, time, GPUs, partition) from params' `resources`
    (ctcoupling.pipeline.dag.job_resources); per experiment for a train job, whose GPUs are train.gpus."""
    if stage != "train":
        return L.job_resources(PARAMS, stage)
    return {k: (lambda w, k=k: L.job_resources(PARAMS, stage, processes(w))[k]) for k in L.job_resources(PARAMS, stage)}
