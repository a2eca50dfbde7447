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
    resources:
        **job_resources("theory"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} theory --params {params.file} --dataset {wildcards.dataset} --quiet 2> {log}"


use rule theory as theory_2d with:
    output:
        theory_output(True),


rule theory_seed:
    """Theory measurements on the runs of another seed of theory.seeds: the record the claims over seeds
    read (no figures, no Theorem 1)."""
    input:
        lambda w: L.theory_deps(PARAMS, w.dataset, int(w.seed)),
    output:
        L.theory_seed_file("{dataset}", "{seed,[0-9]+}"),
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        theory=json.dumps(PARAMS.get("theory"), sort_keys=True),
    log:
        "logs/theory/{dataset}-s{seed}.log",
    threads: THREADS
    resources:
        **job_resources("theory"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} theory --params {params.file} --dataset {wildcards.dataset} --seed {wildcards.seed} "
        "--quiet 2> {log}"
