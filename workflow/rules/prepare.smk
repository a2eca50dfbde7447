rule prepare:
    """One data set: data/{dataset}.npz (uint8 images or float32 points) and its manifest."""
    input:
        code=L.code_deps("prepare"),
    output:
        npz="data/{dataset}.npz",
        manifest="data/{dataset}.json",
    params:
        cmd=CMD,
        file=DATA_PARAMS_FILE,
        spec=lambda w: json.dumps(PARAMS["datasets"][w.dataset], sort_keys=True),
    log:
        "logs/prepare/{dataset}.log",
    threads: THREADS
    resources:
        **job_resources("prepare"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} prepare --params {params.file} --dataset {wildcards.dataset} 2> {log}"


rule classifier:
    """A data set's small CNN, the feature extractor of its FID/KID/IS/PR (held-out accuracy in the .json)."""
    input:
        data="data/{dataset}.npz",
        code=L.code_deps("classifier"),
    output:
        weights="data/{dataset}_classifier.pt",
        record="data/{dataset}_classifier.json",
    params:
        cmd=CMD,
        file=DATA_PARAMS_FILE,
        spec=json.dumps(PARAMS.get("classifier"), sort_keys=True),
    log:
        "logs/classifier/{dataset}.log",
    threads: THREADS
    resources:
        **job_resources("classifier"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} classifier --params {params.file} --dataset {wildcards.dataset} 2> {log}"
