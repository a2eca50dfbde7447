# The GC paper's theory measured on one data set's trained runs (R~_t, transport, R(theta)); the
# 2-D sets add the numerical check of Theorem 1, hence two rules with disjoint data set names.


rule theory:
    """Theory measurements of an image data set."""
    input:
        lambda w: L.theory_deps(PARAMS, w.dataset),
    output:
        theory_output(False),
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        theory=json.dumps(PARAMS.get("theory"), sort_keys=True),
    log:
        "logs/theory/{dataset}.log",
    threads: THREADS
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} theory --params {params.file} --dataset {wildcards.dataset} --quiet 2> {log}"


use rule theory as theory_2d with:
    output:
        theory_output(True),
