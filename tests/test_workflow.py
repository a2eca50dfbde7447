"""Real Snakemake and DVC runs of the smoke params: one DAG, deterministic, idempotent, exact params."""
import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, SMOKE_LOG, background, copy_run, ctc, output_files, run, started, tree_hashes
from ctcoupling.config import params as P
from ctcoupling.pipeline import dag

SMOKE = "params/smoke.yaml"


def test_committed_dvc_yaml_is_current():
    p = ctc("dag", "--check", cwd=ROOT)
    assert "dvc.yaml is current" in p.stdout


def test_dag_check_fails_when_grid_changes(project):
    params = yaml.safe_load((project / "params/default.yaml").read_text())
    params["grid"][0]["seed"].append(7)
    (project / "params/default.yaml").write_text(yaml.safe_dump(params))
    p = ctc("dag", "--check", cwd=project, check=False)
    assert p.returncode == 2 and "dvc.yaml is out of date with params/default.yaml" in p.stderr


def test_conda_env_carries_the_pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "workflow/envs/ctcoupling.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(deps)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", d) for d in deps)
    assert "python=3.11" in env["dependencies"]


def snakemake_outputs(project, params_file):
    p = run(["snakemake", "--summary", "--config", f"params={params_file}"], project)
    lines = [ln.split("\t")[0] for ln in p.stdout.splitlines()[1:] if ln.strip()]
    return {ln for ln in lines if not ln.startswith("logs/")}


def dvc_outputs(project):
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {str(o.def_path) for s in repo.index.stages for o in s.outs}


@pytest.mark.full
@pytest.mark.parametrize("params_file", ["params/default.yaml", SMOKE])
def test_both_engines_list_the_same_outputs(project, params_file):
    run(["git", "init", "-q"], project)
    ctc("dag", "--params", params_file, cwd=project)
    expected = set(dag.all_outputs(P.load(project / params_file)))
    assert snakemake_outputs(project, params_file) == expected
    assert dvc_outputs(project) == expected


def _snakemake(project, dry=False):
    return run(["snakemake", "--cores", "2", "--config", f"params={SMOKE}"] + (["-n"] if dry else []), project)


def test_the_smoke_run_makes_every_output_and_says_what_it_found(smoke_run):
    """`make test`'s one real pipeline run: Snakemake on the smoke params makes exactly the outputs the DAG
    lists, one curve point per snapshot of every experiment, and ends by saying where the results are, the
    time it took and claims.md's opening table (Snakefile onsuccess)."""
    a = smoke_run
    params = P.load(a / SMOKE)
    assert set(tree_hashes(a)) == output_files(a, dag.all_outputs(params))
    for e in P.experiments(params):
        snaps = torch.load(a / dag.run_file(e.name, "snapshots.pt"), weights_only=True)["snapshots"]
        spec = e.config["train"]
        every = spec["snapshot_every"]
        want = [k for k in range(every, spec["steps"], every)] + [spec["steps"]]
        assert [s["step"] for s in snaps] + [spec["steps"]] == want, e.name  # the final weights: model.pt
        curve = pd.read_csv(a / dag.run_file(e.name, "curve.csv"))
        assert list(curve["step"]) == want, e.name
        assert curve.drop(columns="step").notna().all().all() and len(curve.columns) >= 2, e.name
    done = (a / SMOKE_LOG).read_text()
    assert "ctcoupling: done in" in done and "Results in analysis/: claims.md" in done, done[-2000:]
    claims = (a / "analysis" / "claims.md").read_text()
    opening = claims[claims.index("## The answers"):].split("\n\n## ", 1)[0]
    table = [ln for ln in opening.splitlines() if ln.startswith("|")]  # the smoke params decide no primary
    said = [ln for ln in done.splitlines() if ln.startswith("|")]       # claim (one seed): an empty table
    assert said == table  # the answers as claims.md opens with them (a full table: tests/test_curves.py)


def test_predictor_range_reads_every_asked_run_and_flags_by_its_factor(smoke_run):
    """workflow/scripts/predictor_range.py (the GC runaway diagnosis, docs/evidence.md) on the smoke run: one
    row per asked run with a finite ratio per snapshot and the final step; --factor decides the flag; a data
    set without such runs is one line."""
    script = ROOT / "workflow/scripts/predictor_range.py"
    asked = {e.name for e in P.experiments(P.load(smoke_run / SMOKE))
             if (e.dataset, e.objective) == ("two_gaussians", "sct") and e.coupling in ("gc", "vcgc", "ic")}
    assert len(asked) == 3
    tables = {}
    for factor in ("0", "1e30"):
        out = run([sys.executable, script, "--params", SMOKE, "--n", "64", "--factor", factor], smoke_run).stdout
        rows = [ln.strip("|").split(" | ") for ln in out.splitlines() if ln.startswith("| two_gaussians")]
        tables[factor] = {r[0].strip(): r[1:] for r in rows}
    assert set(tables["0"]) == set(tables["1e30"]) == asked
    for name, cells in tables["0"].items():
        ratios = [float(c) for c in cells[:-1]]
        assert ratios and all(0 < r < float("inf") for r in ratios), (name, cells)
        assert cells[-1].strip() == "yes" and tables["1e30"][name][-1].strip() == "", (name, cells)
        assert cells[:-1] == tables["1e30"][name][:-1]  # the same measurement, another threshold
    bad = run([sys.executable, script, "--params", SMOKE, "--dataset", "checkerboard"], smoke_run, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: params/smoke.yaml: no run of checkerboard")


@pytest.mark.full
def test_snakemake_smoke_is_deterministic_idempotent_and_equals_dvc(smoke_run, dvc_smoke_run):
    """Two runs of the smoke params from nothing, by the two engines in separate processes (Snakemake's
    shared smoke run and `dvc repro`'s): bitwise the same artifacts, so each run is deterministic and the
    engines agree; a second Snakemake run has nothing to do."""
    a, (c, _) = smoke_run, dvc_smoke_run
    ha = tree_hashes(a)
    # nothing changed: a second run runs no job
    again = _snakemake(a)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert tree_hashes(a) == ha
    # DVC runs the same commands on the same paths: bitwise the same artifacts
    hc = {k: v for k, v in tree_hashes(c).items() if not k.endswith(".gitignore")}
    assert hc == ha, [k for k in ha if ha[k] != hc.get(k)]


@pytest.mark.full
def test_snakemake_results_are_dvcs_shared_through_a_remote_and_rerun_only_on_change(smoke_run, tmp_path):
    """Issue 13: after the main job (Snakemake) on a DVC project whose dvc.yaml is its params', `dvc
    status` is clean. `dvc push` to a remote (a local directory here; S3/SSH are the same commands,
    docs/cluster.md) and a fresh clone's `make pull` (dvc pull, then snakemake --touch) give every
    artifact bitwise, a clean `dvc status`, and nothing for `dvc repro` or Snakemake to do. A coupling
    value changed in params makes `dvc repro --dry` list that coupling's stages and their descendants only."""
    project = copy_run(smoke_run, tmp_path / "project")  # the main job (Snakemake) on a DVC project
    assert _status(project) == set()
    again = _snakemake(project, dry=True)  # `dvc commit` at its end rewrote the files, their mtimes kept
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]

    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], project)
    run(["dvc", "push", "-q"], project)
    shutil.copy2(ROOT / "Makefile", project / "Makefile")
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "smoke run"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "runs").exists()
    run(["make", "-o", ".venv/.installed", "pull", f"PARAMS={SMOKE}", f"BIN={Path(sys.executable).parent}"], clone)
    hp, hc = (tree_hashes(d) for d in (project, clone))
    assert hc == hp and len(hc) >= len(dag.all_outputs(P.load(project / SMOKE)))
    assert _status(clone) == set()
    assert _ran(run(["dvc", "repro", "--dry"], clone).stdout) == set()
    again = _snakemake(clone, dry=True)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
    params = yaml.safe_load((project / SMOKE).read_text())
    params["couplings"]["gc"]["mu"] = 0.3
    (project / SMOKE).write_text(yaml.safe_dump(params, sort_keys=False))
    gc = [e.name for e in P.experiments(P.load(project / SMOKE)) if e.coupling == "gc"]
    assert gc and _status(project) == {f"train-{n}" for n in gc}
    planned = _ran(run(["dvc", "repro", "--dry"], project).stdout)
    assert {f"train-{n}" for n in gc} <= planned
    assert not {s for s in planned if s.split("-", 1)[0] in ("train", "sample", "evaluate", "curve", "prepare")
                and s.split("-", 1)[1] not in gc}, planned


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _status(project) -> set[str]:
    out = run(["dvc", "status"], project).stdout
    return {ln.rstrip(":") for ln in out.splitlines() if ln and not ln.startswith((" ", "\t")) and ln.endswith(":")}


@background("dvc_params_change", needs=("dvc_smoke_run",))
def _dvc_params_change(directory: Path, dvc_smoke_run) -> None:
    """The params-change test's runs and checks, in the background once `dvc_smoke_run` is made: each `dvc
    repro` here is serial, one core, and two of them re-run most of the smoke suite."""
    project, first = copy_run(dvc_smoke_run[0], directory / "project"), dvc_smoke_run[1]  # `dvc repro` from nothing
    names = [e.name for e in P.experiments(P.load(project / SMOKE))]
    assert _ran(first) == {s.name for s in dag.stages(P.load(project / SMOKE), SMOKE)}
    second = run(["dvc", "repro"], project)
    assert _ran(second.stdout) == set() and _status(project) == set()

    # one training value: every train stage, then its descendants; no data preparation
    params = yaml.safe_load((project / SMOKE).read_text())
    params["train"]["lr"] = 0.00123
    (project / SMOKE).write_text(yaml.safe_dump(params, sort_keys=False))
    assert _status(project) == {f"train-{n}" for n in names}
    third = run(["dvc", "repro"], project)
    theory = {f"theory-{ds}" for ds in dag.theory_datasets(params)}  # measures the retrained runs
    assert _ran(third.stdout) == ({f"{s}-{n}" for n in names for s in ("train", "sample", "evaluate", "curve")} |
                                  {"report", "audit"} | theory)

    # an override of one data set: only that data set's training and its descendants
    params["overrides"]["checkerboard_short"]["set"]["train"]["steps"] = 12
    (project / SMOKE).write_text(yaml.safe_dump(params, sort_keys=False))
    touched = [n for n in names if n.startswith("checkerboard-")]
    assert _status(project) == {f"train-{n}" for n in touched}
    fourth = run(["dvc", "repro"], project)
    assert _ran(fourth.stdout) == ({f"{s}-{n}" for n in touched for s in ("train", "sample", "evaluate", "curve")} |
                                   {"report", "audit"})  # checkerboard is not a theory data set

    # a sampling value: sampling, evaluation and the curves (sampled alike) of every experiment, no training
    params["sample"]["seed_offset"] = 77
    (project / SMOKE).write_text(yaml.safe_dump(params, sort_keys=False))
    assert _status(project) == {f"{s}-{n}" for n in names for s in ("sample", "curve")}


@pytest.fixture
def dvc_params_change(tmp_path_factory):
    return started("dvc_params_change", tmp_path_factory)


@pytest.mark.full
def test_dvc_repro_reruns_exactly_what_a_params_change_touches(dvc_params_change):
    """`dvc repro` after a change of params re-runs exactly the stages the change touches: nothing after a
    run, every training and its descendants for a training value, one data set's for its override, and
    sampling's stages for a sampling value (the runs and their checks: `_dvc_params_change`)."""
    dvc_params_change.result()


def test_mtimes_kept_restores_what_a_rewrite_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/a").mkdir(parents=True)
    older, newer = tmp_path / "runs/a/model.pt", tmp_path / "runs/a/eval.json"
    older.write_text("m"), newer.write_text("e")
    os.utime(older, ns=(10**18, 10**18)), os.utime(newer, ns=(15 * 10**17, 15 * 10**17))
    with dag.mtimes_kept(("runs",)):
        older.unlink()
        older.write_text("m")  # as `dvc commit` puts a copy back: now the newest file
        assert older.stat().st_mtime_ns > newer.stat().st_mtime_ns
    assert older.stat().st_mtime_ns == 10**18 and newer.stat().st_mtime_ns == 15 * 10**17
