# ctcoupling pipeline (Snakemake). The same DAG as dvc.yaml: both come from ctcoupling.pipeline.dag.
#   snakemake --cores all                                  # params/default.yaml
#   snakemake --cores all --config params=params/smoke.yaml
#   snakemake --cores all --use-conda                      # workflow/envs/ctcoupling.yaml
#   snakemake --profile workflow/profiles/slurm            # SLURM cluster

import time

START = time.time()  # the run's wall time, for the summary it ends with

report: "workflow/report/workflow.rst"  # `snakemake --report report.html`: every analysis/ figure and table


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


onsuccess:
    # The run's outputs recorded in DVC's cache and dvc.lock (issue 13), so that after a params
    # change `dvc repro` re-runs only what the change touches. Only where this is a DVC project and
    # dvc.yaml is the one `ctcoupling dag` writes for this run's params.
    if Path(".dvc").is_dir() and Path("dvc.yaml").is_file() and \
            Path("dvc.yaml").read_text() == L.dvc_yaml(P.load(PARAMS_FILE), PARAMS_FILE):
        with L.mtimes_kept():  # or the next Snakemake run would redo the jobs whose inputs DVC rewrote
            shell("dvc commit --force --quiet")
    # What the run found: where the results are, the time it took, the claims' opening table.
    claims = Path(L.ANALYSIS_DIR, "claims.md")
    print(L.run_summary(claims.read_text() if claims.is_file() else None, time.time() - START, L.ANALYSIS_DIR,
                      sorted(p.name for p in Path(L.ANALYSIS_DIR).glob("*.png")), L.study_output(PARAMS)),
          file=sys.stderr)
