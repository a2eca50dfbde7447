# ctcoupling pipeline (Snakemake). The same DAG as dvc.yaml: both come from ctcoupling.pipeline.
#   snakemake --cores all                                  # params/default.yaml
#   snakemake --cores all --config params=params/smoke.yaml
#   snakemake --cores all --use-conda                      # workflow/envs/ctcoupling.yaml
#   snakemake --profile workflow/profiles/slurm            # SLURM cluster

include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        ALL_OUTPUTS,
    default_target: True
