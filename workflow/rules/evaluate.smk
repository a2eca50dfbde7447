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
    benchmark:
        "logs/benchmarks/evaluate/{experiment}.tsv"  # job-seconds per stage: benchmarks/job_seconds.py
    threads: THREADS
    resources:
        **job_resources("evaluate"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} evaluate --params {params.file} --experiment {wildcards.experiment} 2> {log}"


rule curve:
    """The training curve of one experiment: each snapshot sampled and scored (W2, or FID/KID)."""
    input:
        inputs=lambda w: L.curve_inputs(PARAMS, EXPERIMENTS[w.experiment]),
        code=L.code_deps("curve"),
    output:
        "runs/{experiment}/curve.csv",
        "runs/{experiment}/curve.json",
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        config=resolved("sample", "evaluate"),
    log:
        "logs/curve/{experiment}.log",
    benchmark:
        "logs/benchmarks/curve/{experiment}.tsv"  # job-seconds per stage: benchmarks/job_seconds.py
    threads: THREADS
    resources:
        **job_resources("curve"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} curve --params {params.file} --experiment {wildcards.experiment} 2> {log}"
