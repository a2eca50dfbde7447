import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

# One thread in every pool of the test process (torch's OpenMP, numpy's and scipy's OpenBLAS) and of every
# command a test runs, the suite's own `threads: 1`: the background runs below share the cores with the tests.
# On the oversubscribed cores OpenMP's spinning threads made a training test that took its default two threads
# 60x slower (1363 s in CI's log, 2026-12-07), and CI's next run stopped for good inside the digits FID test,
# whose BLAS calls ran on numpy's OpenBLAS, loaded with torch before this file could set its thread count
# (two threads, `threadpoolctl.threadpool_info()` in the test process). The variables reach libraries loaded
# later and the commands; `threadpool_limits` the ones already loaded (torch may come from a plugin).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
torch.set_num_threads(1)
threadpool_limits(1)
# Real Snakemake and DVC runs, offline: no analytics, no update checks.
ENV = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_NO_UPDATE_CHECK="1", PYTHONUNBUFFERED="1")
ENV["PATH"] = str(Path(sys.executable).parent) + os.pathsep + ENV.get("PATH", "")


def run(args, cwd, check=True, **kw):
    """Run a command like a user would; on failure show its output."""
    p = subprocess.run([str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def ctc(*args, cwd, check=True):
    return run([sys.executable, "-m", "ctcoupling", *args], cwd, check=check)


def copy_project(dest: Path) -> Path:
    """The files a user's checkout holds (no outputs), in a fresh directory."""
    dest.mkdir(parents=True)
    for name in ["Snakefile", "dvc.yaml", ".dvcignore", ".gitignore", "params", "workflow", "src"]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / name)
    (dest / ".dvc").mkdir()
    shutil.copy2(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    return dest


TIMESTAMP = ".snakemake_timestamp"  # Snakemake's empty marker in a directory output (.dvcignore'd)


def tree_hashes(root: Path, dirs=("data", "runs", "analysis")) -> dict[str, str]:
    out = {}
    for d in dirs:
        for p in sorted((root / d).rglob("*")):
            if p.is_file() and p.name != TIMESTAMP:
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def output_files(root: Path, outputs) -> set[str]:
    """The files that declared outputs hold: a file output itself, a directory output every file in it."""
    out = set()
    for o in outputs:
        p = root / o
        out |= {str(f.relative_to(root)) for f in p.rglob("*") if f.is_file() and f.name != TIMESTAMP} \
            if p.is_dir() else {o}
    return out


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


SMOKE_LOG = "smoke-run.log"  # the smoke run's Snakemake output, beside its checkout's files


# Background runs. The session's long runs are started in threads when collection ends, beside the tests, and a
# test that needs one waits for it where it asks (the tests that wait run last). They are what keeps `make
# test-all` under its goal: `dvc repro` runs its stages one at a time (one of the two cores), a run through SLURM
# mostly waits on sbatch and sacct, and most unit tests use one core, so run in turn each left a core idle (the
# SLURM run 1203 s, the DVC runs 570 s and 703 s, measured). A job is a function of a fresh directory, registered
# by name with `background`; the name is the fixture a test asks it by. Jobs never print; a failure or skip inside
# one is raised where its result is asked for.
_JOBS: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {}
_STARTED: dict[str, Future] = {}
_POOL: list[ThreadPoolExecutor] = []


def background(name: str, needs: tuple[str, ...] = ()):
    """Register `fn(directory, *needed)` as the background job `name`, started after the jobs it `needs` have
    finished, with their results."""
    def register(fn):
        _JOBS[name] = (fn, needs)
        return fn
    return register


def started(name: str, factory) -> Future:
    """The background job, started now (after starting the jobs it needs) unless it was: a test that waits for
    its result inside its body reports a failure in the job as its own."""
    if name not in _STARTED:
        fn, needs = _JOBS[name]
        deps = [started(n, factory) for n in needs]
        directory = factory.mktemp(name)  # made here, in the main thread

        def job():
            return fn(directory, *(d.result() for d in deps))
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=len(_JOBS), thread_name_prefix="background"))
        _STARTED[name] = _POOL[0].submit(job)
    return _STARTED[name]


def result(name: str, factory):
    """The background job's result, waited for (started now if collection did not start it)."""
    return started(name, factory).result()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Tests that wait for a background run go last (stable order otherwise), so the run has the session's
    other tests to overlap."""
    waits = {id(item) for item in items if set(getattr(item, "fixturenames", ())) & set(_JOBS)}
    items.sort(key=lambda item: id(item) in waits)


def pytest_collection_finish(session):
    if session.config.option.collectonly or session.config.option.setupplan:
        return  # nothing will run
    threadpool_limits(1)  # and a pool a test module's imports loaded (the variables above should have set it)
    asked = {name for item in session.items for name in getattr(item, "fixturenames", ()) if name in _JOBS}
    for name in sorted(asked):
        started(name, session.config._tmp_path_factory)  # the tmp_path_factory fixture's own factory


def pytest_sessionfinish(session):
    for pool in _POOL:
        pool.shutdown(wait=True, cancel_futures=True)


@background("smoke_run")
def _smoke_run(directory: Path) -> Path:
    root = copy_project(directory / "project")
    run(["git", "init", "-q"], root)
    ctc("dag", "--params", "params/smoke.yaml", cwd=root)
    p = run(["snakemake", "--cores", "2", "--config", "params=params/smoke.yaml"], root)
    (root / SMOKE_LOG).write_text(p.stdout + p.stderr)
    return root


@background("dvc_smoke_run")
def _dvc_smoke_run(directory: Path) -> tuple[Path, str]:
    root = copy_project(directory / "project")
    run(["git", "init", "-q"], root)
    ctc("dag", "--params", "params/smoke.yaml", cwd=root)
    return root, run(["dvc", "repro"], root).stdout


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A git + DVC checkout whose dvc.yaml is the smoke params', where the main job (a local Snakemake run of
    the smoke params) has been made, its outputs recorded by DVC at its end (Snakefile onsuccess). One run
    shared by every test that reads it (`make test` runs it once, `make test-all` once; in the background
    from the session's start); a test that changes it works on a copy (`copy_run`). Its Snakemake output is
    in `SMOKE_LOG`."""
    return result("smoke_run", tmp_path_factory)


@pytest.fixture(scope="session")
def dvc_smoke_run(tmp_path_factory) -> tuple[Path, str]:
    """(checkout, output): the smoke params run by `dvc repro` from nothing on a git + DVC checkout (in the
    background from the session's start), shared by the tests that compare it with Snakemake's and that
    change params from it (on a copy)."""
    return result("dvc_smoke_run", tmp_path_factory)


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of a finished run's checkout (outputs, DVC cache, git, Snakemake's records; mtimes kept) to
    change without touching the shared one."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def write_params(path: Path, base: str = "smoke.yaml", **sections) -> Path:
    """A params file: shipped `base` with `section={key: value}` updates merged in."""
    import yaml

    params = yaml.safe_load((ROOT / "params" / base).read_text())
    for section, update in sections.items():
        params[section].update(update)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def say(request, line: str) -> None:
    """A line in the test session's own output (CI's log), past pytest's capture of the test."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        request.config.pluginmanager.get_plugin("terminalreporter").write_line(line)


@pytest.fixture(scope="session")
def fake_inception(tmp_path_factory):
    """(path, sha256) of a randomly initialised Inception-v3 weights file in exactly the layout torch-fidelity's
    FeatureExtractorInceptionV3 loads (benchmarks/gpu_check.py's `random_inception`, which times FID
    features with it where no weights file is at hand)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    return gpu_check.random_inception(tmp_path_factory.mktemp("inception"))
