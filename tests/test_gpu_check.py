"""benchmarks/gpu_check.py, the acceptance check run once on a lent GPU (issue 24), on the CPU at tiny
sizes (`--cpu --tiny`: the same sections and code paths, ~35 s on 2 cores), so it cannot rot before
a GPU comes."""
import math
import sys

import pytest

from conftest import ROOT, run

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
NETWORKS = ("CIFAR-10 DDPM++ (cifar10_ict)", "EDM2-S (imagenet64_ecm_vc)")
COUPLINGS = ("IC", "OT", "VC", "GC", "VC+GC")
MODES = ("fp32", "bf16+CL (compile skipped on CPU)")


def rows(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]]


def number(cell: str) -> float:
    value = float(cell.rstrip("%"))
    assert math.isfinite(value) and value > 0, cell
    return value


@pytest.mark.full  # the whole check end to end on a CPU: every preset's network built and stepped
def test_tiny_cpu_run_writes_every_row(tmp_path):
    out = tmp_path / "gpu_check.md"
    p = run([sys.executable, SCRIPT, "--cpu", "--tiny", "--out", out], cwd=tmp_path)
    text = out.read_text()
    assert text in p.stdout and "device: CPU" in text and "--tiny" in text
    table = rows(text)
    train = {(r["network"], r["coupling"], r["mode"]): r for r in table if r["section"] == "train"}
    assert set(train) == {(n, c, m) for n in NETWORKS for c in COUPLINGS for m in MODES}
    for (network, coupling, mode), r in train.items():
        assert number(r["img/s"]) and number(r["TFLOP/s"]) and number(r["first steps s"]), r
        assert r["MFU"] == "" and "error" not in r["notes"] and "skipped" not in r["notes"]  # no peak for a CPU
    # the couplings a preset does not define are derived, and say so
    assert "derived: kind ot" in train[NETWORKS[1], "OT", "fp32"]["notes"]
    assert "derived: the preset's VC (vc, its overrides too) + GC" in train[NETWORKS[0], "VC+GC", "fp32"]["notes"]
    assert "derived" not in train[NETWORKS[0], "VC", "fp32"]["notes"]
    [loss] = [r for r in table if r["section"] == "loss check"]
    assert loss["notes"].startswith("PASS: 50 steps") and "(falling)" in loss["notes"] and number(loss["img/s"])
    [fid] = [r for r in table if r["section"] == "sample + FID"]
    assert number(fid["img/s"]) and number(fid["first steps s"])
    assert "32 images generated and scored" in fid["notes"] and "random-weight Inception" in fid["notes"]
    assert "[sample + FID" in p.stdout and "[all sections]" in p.stdout  # each section's time as it ends


def test_spent_budget_still_writes_the_table(tmp_path):
    """Nothing fits a zero budget: every row says it was skipped, and the table is written."""
    out = tmp_path / "gpu_check.md"
    run([sys.executable, SCRIPT, "--cpu", "--tiny", "--budget-s", "0", "--out", out], cwd=tmp_path)
    table = rows(out.read_text())
    assert len(table) == 2 + len(NETWORKS) * len(COUPLINGS) * len(MODES)
    assert all(r["notes"].startswith("skipped: ") and r["img/s"] == "" for r in table)
