rule train:
    """Consistency training of one experiment (dataset-objective-coupling-seed)."""
    input:
        data=experiment_data,
        init=experiment_init,
        code=L.code_deps("train"),
    output:
        model="runs/{experiment}/model.pt",
        snapshots="runs/{experiment}/snapshots.pt",
        live=directory("runs/{experiment}/dvclive/plots"),  # the DVCLive log (ctcoupling.train.trainlog)
        live_metrics="runs/{experiment}/dvclive/metrics.json",
        record="runs/{experiment}/train.json",
    params:
        cmd=lambda w: L.train_cmd(experiment_config(w)),  # torchrun where train.gpus > 1
        file=PARAMS_FILE,
        config=resolved(*P.TRAIN_SECTIONS),
    log:
        "logs/train/{experiment}.log",
    benchmark:
        "logs/benchmarks/train/{experiment}.tsv"  # job-seconds per stage: benchmarks/job_seconds.py
    threads: lambda w: L.job_threads(PARAMS, processes(w))
    resources:
        **job_resources("train"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} train --params {params.file} --experiment {wildcards.experiment} 2> {log}"


rule sample:
    """Samples from a trained experiment."""
    input:
        model="runs/{experiment}/model.pt",
        code=L.code_deps("sample"),
    output:
        samples="runs/{experiment}/samples.npz",
        preview="runs/{experiment}/samples.png",
        record="runs/{experiment}/sample.json",
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        config=resolved("sample"),
    log:
        "logs/sample/{experiment}.log",
    benchmark:
        "logs/benchmarks/sample/{experiment}.tsv"  # job-seconds per stage: benchmarks/job_seconds.py
    threads: THREADS
    resources:
        **job_resources("sample"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} sample --params {params.file} --experiment {wildcards.experiment} 2> {log}"
