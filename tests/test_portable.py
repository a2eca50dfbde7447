"""CPU kernels pinned to AVX2 (ctcoupling.core.portable): a stage's bits must not depend on the x86 CPU.

A second machine cannot be had in a test, so the slow test emulates one: an AVX2-only x86 machine is
this one with every library capped at AVX2 (MKL_ENABLE_INSTRUCTIONS for MKL's dispatch, on top of the
pins). The pinned run must give that machine's bits, and, as the control that shows the workload
exercises the instruction set at all, the native AVX-512 run must give other bits (where this CPU has
AVX-512).
"""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ENV, ROOT
from ctcoupling.core import portable


def test_pin_fills_only_what_is_unset_and_can_be_turned_off():
    env = {"MKL_CBWR": "COMPATIBLE"}
    portable.pin(env)
    assert env["MKL_CBWR"] == "COMPATIBLE"  # the user's value wins
    assert {k: env[k] for k in portable.PINS if k != "MKL_CBWR"} == {k: v for k, v in portable.PINS.items()
                                                                      if k != "MKL_CBWR"}
    assert env["TORCHINDUCTOR_CACHE_DIR"].endswith("_avx2")  # compiled kernels apart from native runs
    off = {portable.OPT_OUT: "1"}
    portable.pin(off)
    assert off == {portable.OPT_OUT: "1"}
    assert portable.in_effect(env)["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert portable.in_effect(off)["ONEDNN_MAX_CPU_ISA"] is None


def test_the_cli_runs_on_the_pinned_kernels():
    """Importing the package (what `python -m ctcoupling` does first) pins the kernels before torch starts."""
    env = {k: v for k, v in ENV.items() if k not in portable.PINS and k != portable.OPT_OUT}
    code = "import ctcoupling, torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("AVX2", "DEFAULT")  # DEFAULT only on a CPU without AVX2


# The digits classifier (a CNN: oneDNN convolutions, MKL matmuls, ATen kernels), the features it gives
# (torch) and a Frechet distance between two feature sets (numpy/scipy: OpenBLAS eigh), all in one job.
_WORKLOAD = r"""
import ctcoupling  # first, as `python -m ctcoupling` does: the pins must precede numpy's and torch's start
import hashlib
import numpy as np, torch
from ctcoupling.data import classifier
from ctcoupling.measure import distances
from threadpoolctl import threadpool_limits
threadpool_limits(1); torch.set_num_threads(1)
from sklearn.datasets import load_digits
d = load_digits()
x = (d.images[:, None] * (255 / 16)).round().astype(np.uint8)
y = d.target.astype(np.int64)
state, acc = classifier.train_classifier(x[:1200], y[:1200], x[1200:], y[1200:], 0, 2, 64, 2e-3, threads=1)
net = classifier.load_classifier(state)
with torch.no_grad():
    f = net.features(torch.from_numpy(x[1200:])).numpy().astype(np.float64)
fid = distances.frechet_distance(*distances.feature_statistics(f[:250]), *distances.feature_statistics(f[250:]))
h = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state["model"].values()))
print(h.hexdigest(), hashlib.sha256(f.tobytes()).hexdigest(), repr(fid), repr(acc))
"""


def _run(env_extra: dict, native: bool = False) -> str:
    env = {k: v for k, v in ENV.items() if k not in portable.PINS and k != portable.OPT_OUT}
    env.update(env_extra)
    if native:
        env[portable.OPT_OUT] = "1"
    p = subprocess.run([sys.executable, "-c", _WORKLOAD], env=env, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.strip()


def _has_avx512() -> bool:
    try:
        return "avx512f" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.full
def test_pinned_run_gives_an_avx2_machines_bits():
    pinned = _run({})
    avx2_machine = _run({**portable.PINS, "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert pinned == avx2_machine
    assert _run({}) == pinned  # and run to run
    if _has_avx512():  # the control: natively this workload does depend on the instruction set
        native = _run({}, native=True)
        assert native.split()[0] != pinned.split()[0], "the native AVX-512 classifier has the pinned bits"


def _dvc_md5(path: Path) -> str:
    """The md5 dvc.lock records: a file's; for a directory, DVC's: the md5 of its JSON listing of
    {md5, relpath} sorted by relpath (dvc_data's Tree), with ".dir" appended."""
    import json

    if not path.is_dir():
        return hashlib.md5(path.read_bytes()).hexdigest()
    entries = [{"md5": _dvc_md5(p), "relpath": p.relative_to(path).as_posix()}
               for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".snakemake_timestamp"]
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


@pytest.mark.full
def test_a_fresh_run_matches_the_committed_lock_on_this_machine(tmp_path, request):
    """The committed dvc.lock was made on the development machine; CI runs this on its own. A slice of the
    default suite (the digits: data, classifier, one iCT-IC run, its samples and its FID/KID/IS/PR) run
    afresh must give every output the md5 the lock records, so `dvc status` stays clean on another x86
    machine (issue 13: the digits classifier used to train to other bits on another CPU, moving every
    digits FID in the 4th digit)."""
    import yaml

    from conftest import copy_project, ctc, say

    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    project = copy_project(tmp_path / "project")
    exp = "digits-ict-ic-s0"
    stages = [("prepare", "--dataset", "digits", "prepare-digits"),
              ("classifier", "--dataset", "digits", "classifier-digits"),
              ("train", "--experiment", exp, f"train-{exp}"), ("sample", "--experiment", exp, f"sample-{exp}"),
              ("evaluate", "--experiment", exp, f"evaluate-{exp}")]
    compared = []
    for cmd, flag, target, stage in stages:
        ctc(cmd, "--params", "params/default.yaml", flag, target, *(["--quiet"] if cmd in ("train", "sample") else []),
            cwd=project)
        for out in lock[stage]["outs"]:
            md5 = _dvc_md5(project / out["path"])
            assert md5 == out["md5"], f"{out['path']}: md5 {md5}, dvc.lock has {out['md5']}"
            compared.append(out["path"])
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    say(request, f"\ndvc.lock reproduced on {cpu} ({'with' if _has_avx512() else 'without'} AVX-512): "
        f"{len(compared)} outputs md5-equal, {', '.join(compared)}")
