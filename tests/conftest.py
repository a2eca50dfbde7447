import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A git + DVC checkout whose dvc.yaml is the smoke params', where the main job (a local Snakemake run of
    the smoke params) has been made, its outputs recorded by DVC at its end (Snakefile onsuccess). One run
    shared by every test that reads it (`make test` runs it once, `make test-all` once); a test that
    changes it works on a copy (`copy_run`). Its Snakemake output is in `SMOKE_LOG`."""
    root = copy_project(tmp_path_factory.mktemp("smoke") / "project")
    run(["git", "init", "-q"], root)
    ctc("dag", "--params", "params/smoke.yaml", cwd=root)
    p = run(["snakemake", "--cores", "2", "--config", "params=params/smoke.yaml"], root)
    (root / SMOKE_LOG).write_text(p.stdout + p.stderr)
    return root


@pytest.fixture(scope="session")
def dvc_smoke_run(tmp_path_factory) -> tuple[Path, str]:
    """(checkout, output): the smoke params run by `dvc repro` from nothing on a git + DVC checkout, shared by
    the tests that compare it with Snakemake's and that change params from it (on a copy)."""
    root = copy_project(tmp_path_factory.mktemp("dvc-smoke") / "project")
    run(["git", "init", "-q"], root)
    ctc("dag", "--params", "params/smoke.yaml", cwd=root)
    return root, run(["dvc", "repro"], root).stdout


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
