rule evaluate:
    """Sample-quality metrics of one experiment against the held-out split."""
    input:
        "runs/{experiment}/samples.npz",
        experiment_data,
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
