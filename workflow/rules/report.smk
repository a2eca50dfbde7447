rule report:
    """Tables and figures over every experiment, written to analysis/."""
    input:
        L.report_deps(PARAMS),
    output:
        L.report_outs(PARAMS),
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        grid=json.dumps(PARAMS["grid"], sort_keys=True),
        report=json.dumps(PARAMS["report"], sort_keys=True),
    log:
        "logs/report.log",
    threads: THREADS
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} report --params {params.file} 2> {log}"
