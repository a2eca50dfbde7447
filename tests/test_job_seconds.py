"""benchmarks/job_seconds.py on fake benchmark files in Snakemake's exact TSV format: the sums per rule,
the scoring/training ratio and the --max-ratio exit status; per grid block with --params, against --budget-minutes."""
import sys

from conftest import ROOT, run

SCRIPT = ROOT / "benchmarks" / "job_seconds.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def write(root, rule, experiment, *seconds, cpu="NA"):
    """One job's file as Snakemake writes it: the header, then a row per run (NA where it sampled nothing)."""
    rows = [f"{s:.2f}\t0:00:{int(s):02d}\t512.10\t2048.55\t400.00\t420.30\t0.00\t1.25\t85.40\t{cpu}" for s in seconds]
    path = root / rule / f"{experiment}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")


def job_seconds(root, *args, check=True):
    return run([sys.executable, SCRIPT, "--dir", root, *args], cwd=root.parent, check=check)


def test_sums_per_rule_and_the_scoring_ratio(tmp_path):
    root = tmp_path / "benchmarks"
    write(root, "train", "a-s0", 20.0, cpu="38.50")
    write(root, "train", "b-s0", 30.0, cpu="55.25")
    write(root, "sample", "a-s0", 2.0)
    write(root, "sample", "b-s0", 3.0, 5.0)  # two repeats: the job's seconds are their mean, 4
    write(root, "evaluate", "a-s0", 4.0)
    write(root, "curve", "a-s0", 5.0)
    write(root, "prepare", "two_gaussians", 1.0)  # another rule: listed, not in the ratio
    lines = job_seconds(root).stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:-1]}
    assert rows == {"train": ["2", "50.0", "93.8"], "sample": ["2", "6.0", "-"], "evaluate": ["1", "4.0", "-"],
                    "curve": ["1", "5.0", "-"], "prepare": ["1", "1.0", "-"]}
    assert lines[-1].startswith("scoring/training: 0.300 ")  # (6 + 4 + 5) / 50
    assert job_seconds(root, "--max-ratio", "0.3").returncode == 0
    over = job_seconds(root, "--max-ratio", "0.29", check=False)
    assert over.returncode == 1 and "over budget: scoring/training 0.300 > 0.29" in over.stderr


def test_nothing_to_measure_exits_2(tmp_path):
    assert "error: no benchmark files" in job_seconds(tmp_path / "absent", check=False).stderr
    write(tmp_path / "b", "sample", "a-s0", 2.0)
    p = job_seconds(tmp_path / "b", "--max-ratio", "0.3", check=False)
    assert p.returncode == 2 and "no train jobs" in p.stderr


def test_per_grid_block_and_the_least_wall_time(tmp_path):
    """--params: each run's jobs summed in the first grid block naming it (smoke.yaml: the first block is
    two_gaussians x ict/ect x 5 couplings, the fourth checkerboard x ict x ic x seeds 0, 1), a file of no
    grid cell ignored, and the least wall time (all job-seconds over the cores) against --budget-minutes."""
    root = tmp_path / "benchmarks"
    write(root, "train", "two_gaussians-ict-ic-s0", 100.0)
    write(root, "sample", "two_gaussians-ict-ic-s0", 10.0)
    write(root, "train", "two_gaussians-ect-vc-s0", 50.0)
    write(root, "curve", "checkerboard-ict-ic-s1", 20.0)  # scored, its training not timed
    write(root, "train", "two_gaussians-ict-ic-s9", 1000.0)  # not a cell of the grid
    out = job_seconds(root, "--params", ROOT / "params/smoke.yaml", "--cores", "4").stdout.splitlines()
    table = out[out.index(next(ln for ln in out if ln.startswith("grid block"))):]
    rows = {ln.rsplit(None, 5)[0].strip(): ln.split()[-5:] for ln in table[1:-1]}
    assert rows["two_gaussians x ict/ect x ic/ot/vc/gc/vcgc x 1 seed"] == ["10", "2", "150", "10", "160"]
    assert rows["checkerboard x ict x ic x 2 seeds"] == ["2", "0", "0", "20", "20"]
    assert rows["two_gaussians x sct x ic/ot/vc/gc/vcgc x 1 seed"] == ["5", "0", "0", "0", "0"]
    assert rows["all"][1:] == ["2", "150", "30", "180"]
    assert table[-1].startswith("least wall time of these jobs on 4 cores: 45 s (0.8 min; training alone 0.6 min)")
    smoke = ("--params", ROOT / "params/smoke.yaml", "--cores", "4", "--budget-minutes")
    assert job_seconds(root, *smoke, "1").returncode == 0
    over = job_seconds(root, *smoke, "0.5", check=False)
    assert over.returncode == 1 and "over budget: at least 0.8 min on 4 cores > 0.5 min" in over.stderr
    bad = job_seconds(root, "--budget-minutes", "25", check=False)
    assert bad.returncode == 2 and "needs --params" in bad.stderr
    (tmp_path / "bad.yaml").write_text("grid: 3\n")
    bad = job_seconds(root, "--params", tmp_path / "bad.yaml", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr and not bad.stdout
