rule prepare:
    """One data set: data/{dataset}.npz (uint8 images or float32 points) and its manifest."""
    input:
        code=L.code_deps("prepare"),
    output:
        npz="data/{dataset}.npz",
        manifest="data/{dataset}.json",
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        spec=lambda w: json.dumps(PARAMS["datasets"][w.dataset], sort_keys=True),
    log:
        "logs/prepare/{dataset}.log",
    threads: THREADS
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} prepare --params {params.file} --dataset {wildcards.dataset} 2> {log}"
