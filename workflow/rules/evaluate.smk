rule evaluate:
    """Sample-quality metrics of one experiment against the held-out split."""
    input:
        samples="runs/{experiment}/samples.npz",
        data=experiment_data,
        code=L.code_deps("evaluate"),
    output:
        "runs/{experiment}/eval.json",
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        config=resolved("evaluate"),
    log:
        "logs/evaluate/{experiment}.log",
    threads: THREADS
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} evaluate --params {params.file} --experiment {wildcards.experiment} 2> {log}"
