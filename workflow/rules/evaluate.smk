rule evaluate:
    """Sample-quality metrics of one experiment: W2 (+ energy) and, for images, FID/KID/IS/PR."""
    input:
        inputs=lambda w: L.evaluate_inputs(PARAMS, EXPERIMENTS[w.experiment]),
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
