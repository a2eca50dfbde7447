rule report:
    """Tables and figures over every experiment, written to analysis/."""
    input:
        L.report_deps(PARAMS),
    output:
        reported(L.report_outs(PARAMS)),
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        grid=json.dumps(PARAMS["grid"], sort_keys=True),
        report=json.dumps(PARAMS["report"], sort_keys=True),
    log:
        "logs/report.log",
    threads: THREADS
    resources:
        **job_resources("report"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} report --params {params.file} 2> {log}"


rule audit:
    """Every published number of params/published_fids.yaml against this suite's measurements."""
    input:
        registry=L.REGISTRY,
        presets=L.audit_presets(),
        evals=[L.run_file(x, "eval.json") for x in EXPERIMENTS],
        code=L.code_deps("audit"),
    output:
        reported([L.AUDIT_MD, L.AUDIT_CSV]),
    params:
        cmd=CMD,
        file=PARAMS_FILE,
    log:
        "logs/audit.log",
    threads: 1
    resources:
        **job_resources("audit"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} audit --params {params.file} 2> {log}"


rule pilot:
    """The pilot's rules applied to its runs (params with a `pilot` section: params/pilot.yaml)."""
    input:
        L.pilot_deps(PARAMS),
    output:
        L.PILOT_MD,
    params:
        cmd=CMD,
        file=PARAMS_FILE,
        pilot=json.dumps(PARAMS.get("pilot"), sort_keys=True),
    log:
        "logs/pilot.log",
    threads: 1
    resources:
        **job_resources("report"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "{params.cmd} pilot --params {params.file} 2> {log}"


rule oracle_resolution:
    """The confirmatory oracle test (params with a `resolution` section: params/oracle.yaml) on its runs."""
    input:
        L.resolution_deps(PARAMS),
    output:
        L.RESOLUTION_MD,
    params:
        file=PARAMS_FILE,
        script=L.RESOLUTION_SCRIPT,
        design=json.dumps(PARAMS.get("resolution"), sort_keys=True),
    log:
        "logs/oracle_resolution.log",
    threads: THREADS * 2
    resources:
        **job_resources("report"),
    conda:
        "../envs/ctcoupling.yaml"
    shell:
        "python {params.script} --params {params.file} --out {output} --jobs {threads} 2> {log}"
