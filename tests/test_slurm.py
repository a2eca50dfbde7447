"""The SLURM route for real: a single-node SLURM (slurmctld, slurmd, slurmdbd for sacct) brought up from
Debian's packages (tests/slurm_cluster.py), the smoke params run through `snakemake --profile` with a
profile derived from workflow/profiles/slurm, every job through sbatch, the artifacts bitwise equal to a
local run's. `.ci/run` installs the packages; elsewhere the test skips, saying what to install."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from conftest import ENV, ROOT, background, copy_project, output_files, result, say, tree_hashes
from ctcoupling.config import params as P
from ctcoupling.pipeline import dag

SMOKE = "params/smoke.yaml"


def test_profile_takes_resources_from_params_only():
    """The profile sets no resources of its own: params' `resources` are the one source (docs/cluster.md)."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert not {"default-resources", "set-resources", "set-threads"} & set(profile)
    params = P.load(ROOT / "params/cifar10_ict.yaml")
    [ic] = [e for e in P.experiments(params) if e.coupling == "ic"]
    gpus = ic.config["train"]["gpus"]
    assert gpus > 1 and dag.job_resources(params, "train", gpus)["gpu"] == gpus
    assert dag.job_threads(params, gpus) == params["threads"] * gpus
    assert dag.job_resources(params, "evaluate")["gpu"] == 1
    assert "gpu" not in dag.job_resources(params, "audit")
    assert "gpu" not in dag.job_resources(P.load(ROOT / SMOKE), "train")  # CPU suites ask for none


@background("slurm_smoke_run")
def _slurm_smoke_run(directory: Path) -> tuple[Path, str, list[str]]:
    """(checkout, Snakemake's output, sacct's lines): the smoke params through `snakemake --profile` on a
    single-node SLURM, in the background from the session's start (conftest.background)."""
    reason = slurm_cluster.available()
    if reason:
        pytest.skip(reason)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("the SLURM executor plugin is not installed: pip install -e '.[slurm]'")

    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    # the jobs run this venv's python, as the submitter. The plugin polls sacct after the init seconds, then
    # 10 s longer each time no job has finished, back to the init seconds when one has
    # (snakemake_executor_plugin_slurm 2.8 check_active_jobs): at 1 s it polls at 1, 12 and 33 s, and a smoke
    # job takes 10-21 s through sbatch, so each pair of jobs waited 33 s; at 5 s the polls at 5 and 20 s
    # catch nearly every job at 20 s
    profile.update({"use-conda": False, "latency-wait": 5, "slurm-init-seconds-before-status-checks": 5})
    (directory / "profile").mkdir()
    (directory / "profile/config.yaml").write_text(yaml.safe_dump(profile))

    project = copy_project(directory / "project")
    with slurm_cluster.cluster(directory / "slurm") as c:
        env = dict(ENV, **{k: v for k, v in c.env.items() if k != "PATH"})
        env["PATH"] = f"{c.bin_dir}:{Path(sys.executable).parent}:{c.env['PATH']}"
        p = subprocess.run(["snakemake", "--profile", str(directory / "profile"), "--jobs", str(c.cpus),
                            "--config", f"params={SMOKE}"], cwd=project, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:] + c.log_tails()
        acct = c.run("sacct", "-X", "-n", "-P", "-a", "--format=JobID,JobName,Partition,AllocCPUS,ReqMem,State",
                     "-S", "2000-01-01").stdout.splitlines()
    return project, p.stdout + p.stderr, acct


@pytest.fixture
def slurm_smoke_run(tmp_path_factory):
    return result("slurm_smoke_run", tmp_path_factory)


@pytest.mark.full
def test_smoke_params_through_a_real_slurm(request, slurm_smoke_run, smoke_run):
    project, log, acct = slurm_smoke_run
    sbatch_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    jobs = [ln.split("|") for ln in acct if ln]
    expected = output_files(project, dag.all_outputs(P.load(project / SMOKE)))
    n_jobs = int(re.search(r"(\d+) of \1 steps \(100%\) done", log).group(1))
    n_local = len(re.findall(r"^localrule ", log, re.M))  # `all`: a target, nothing to run
    assert n_local == 1 and len(sbatch_ids) == n_jobs - 1, f"{len(sbatch_ids)} sbatch ids for {n_jobs} jobs"
    assert {j[0] for j in jobs} >= set(sbatch_ids) and all(j[-1] == "COMPLETED" for j in jobs
                                                             if j[0] in sbatch_ids), acct
    say(request, f"\nSLURM: {len(sbatch_ids)} jobs through sbatch, job ids {min(map(int, sbatch_ids))}..{max(map(int, sbatch_ids))}; "
                  f"sacct: {sum(j[-1] == 'COMPLETED' for j in jobs)} COMPLETED, e.g. {'|'.join(jobs[0])}")

    hs, hl = tree_hashes(project), tree_hashes(smoke_run)  # a local Snakemake run's
    assert set(hs) == expected and hs == hl, [k for k in hl if hl[k] != hs.get(k)]
    say(request, f"SLURM vs local run: {len(hs)} artifacts, sha256 all equal")
