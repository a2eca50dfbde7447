"""Job-seconds per Snakemake rule, from the benchmark files the rules write, and the scoring budget.

    python benchmarks/job_seconds.py [--dir logs/benchmarks] [--max-ratio 0.3]
    python benchmarks/job_seconds.py --params params/default.yaml [--cores 2] [--budget-minutes 25]

The train, sample, evaluate and curve rules (workflow/rules/train.smk, evaluate.smk) each write
Snakemake's benchmark TSV, logs/benchmarks/RULE/EXPERIMENT.tsv: a header, then one row per run of the
job (several under Snakemake's `repeat`), its wall seconds in column `s` and its CPU seconds in
`cpu_time` (NA where Snakemake could not sample the process). A job's seconds are the mean of its rows.

Prints per rule the jobs, their total job-seconds (wall) and CPU seconds, and the scoring budget:
the job-seconds of the scoring stages (sample + evaluate + curve) over those of training (issue 25,
item 11: at most 0.3). With --params, also per block of the params' grid (the design's families: the
primary claims, the continuous-time family, the exploratory sweeps; a cell counts in the first block
that names it, as the grid does) the training and scoring job-seconds of its runs, and the least wall
time those jobs need on --cores cores: their job-seconds over the cores, as if no core ever idled
(the theory, report and other stages come on top). Snakemake runs --cores jobs at once, so each file
was measured beside other jobs, as a run's jobs are.

Exit status: 0; 1 when --max-ratio is given and the ratio exceeds it, or --budget-minutes and the
least wall time exceeds it; 2 when there is nothing to measure (no benchmark files, --max-ratio
without any train job, --budget-minutes without --params) or the params file is invalid.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from ctcoupling.config import params as P
from ctcoupling.core.errors import UserError

TRAINING = ("train",)
SCORING = ("sample", "evaluate", "curve")


def _number(text: str | None) -> float:
    """A benchmark cell as a number; NaN for Snakemake's NA (and '-', its None)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def read_benchmark(path: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one job: the means over the file's rows (NaN CPU where none was sampled)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no row with an `s` column)")
    wall = [_number(r["s"]) for r in rows]
    if any(math.isnan(s) for s in wall):
        raise ValueError(f"{path}: a row without wall seconds in column `s`")
    cpu = [c for c in (_number(r.get("cpu_time")) for r in rows) if not math.isnan(c)]
    return sum(wall) / len(wall), (sum(cpu) / len(cpu) if cpu else math.nan)


def read_jobs(root: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """Per rule (a directory under root), per job (its file's stem: the experiment): (wall, CPU) seconds."""
    return {d.name: jobs for d in (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
            if (jobs := {f.stem: read_benchmark(f) for f in sorted(d.glob("*.tsv"))})}


def job_seconds(jobs: dict[str, dict[str, tuple[float, float]]]) -> dict[str, dict]:
    """Per rule of `read_jobs`: {"jobs", "seconds", "cpu_seconds"}; cpu_seconds sums the jobs where
    Snakemake sampled the CPU time (NaN where it sampled none)."""
    totals = {}
    for rule, per_job in jobs.items():
        cpu = [c for _, c in per_job.values() if not math.isnan(c)]
        totals[rule] = {"jobs": len(per_job), "seconds": sum(w for w, _ in per_job.values()),
                        "cpu_seconds": sum(cpu) if cpu else math.nan}
    return totals


def budget(totals: dict[str, dict]) -> tuple[float, float, float]:
    """(scoring, training, scoring / training) job-seconds: sample + evaluate + curve, and train; the
    ratio NaN without train jobs."""
    scoring = sum(totals[r]["seconds"] for r in SCORING if r in totals)
    train = sum(totals[r]["seconds"] for r in TRAINING if r in totals)
    return scoring, train, scoring / train if train > 0 else math.nan


def block_label(block: dict) -> str:
    """A grid block in a line: its datasets x objectives x couplings x seeds."""
    seeds = block["seed"]
    shown = f"{len(seeds)} seed" + ("s" if len(seeds) > 1 else "")
    return " x ".join(["/".join(block[a]) for a in ("dataset", "objective", "coupling")] + [shown])


def by_block(jobs: dict[str, dict[str, tuple[float, float]]], params: dict) -> list[dict]:
    """Per block of params' grid: {"block", "runs", "measured", "train", "scoring"}: its cells (each in
    the first block that names it, as `experiments` numbers them), how many have a train benchmark file,
    and the job-seconds of their train jobs and of their sample, evaluate and curve jobs (`read_jobs`)."""
    rows = [{"block": block_label(b), "runs": 0, "measured": 0, "train": 0.0, "scoring": 0.0} for b in params["grid"]]
    for e in P.experiments(params):
        row = next(r for r, b in zip(rows, params["grid"]) if all(getattr(e, a) in b[a] for a in P.AXES))
        row["runs"] += 1
        for rule in TRAINING + SCORING:
            if e.name in jobs.get(rule, {}):
                row["train" if rule in TRAINING else "scoring"] += jobs[rule][e.name][0]
                row["measured"] += rule in TRAINING
    return rows


def block_table(rows: list[dict], cores: int) -> tuple[str, float]:
    """The per-block table and the least wall seconds of all its jobs on `cores` cores."""
    width = max(len(r["block"]) for r in rows)
    lines = [f"{'grid block':<{width}}{'runs':>6}{'timed':>7}{'train':>9}{'scoring':>9}{'total':>9}"]
    for r in rows:
        lines.append(f"{r['block']:<{width}}{r['runs']:>6}{r['measured']:>7}{r['train']:>9.0f}{r['scoring']:>9.0f}"
                     f"{r['train'] + r['scoring']:>9.0f}")
    train, scoring = sum(r["train"] for r in rows), sum(r["scoring"] for r in rows)
    lines.append(f"{'all':<{width}}{sum(r['runs'] for r in rows):>6}{sum(r['measured'] for r in rows):>7}"
                 f"{train:>9.0f}{scoring:>9.0f}{train + scoring:>9.0f}")
    least = (train + scoring) / cores
    lines.append(f"least wall time of these jobs on {cores} cores: {least:.0f} s ({least / 60:.1f} min; training "
                 f"alone {train / cores / 60:.1f} min), before the theory, report and other stages")
    return "\n".join(lines), least


def table(totals: dict[str, dict]) -> str:
    order = [r for r in TRAINING + SCORING if r in totals] + sorted(set(totals) - set(TRAINING + SCORING))
    lines = [f"{'rule':<12}{'jobs':>6}{'job-s':>11}{'cpu-s':>11}"]
    for r in order:
        t = totals[r]
        cpu = "-" if math.isnan(t["cpu_seconds"]) else f"{t['cpu_seconds']:.1f}"
        lines.append(f"{r:<12}{t['jobs']:>6}{t['seconds']:>11.1f}{cpu:>11}")
    scoring, train, ratio = budget(totals)
    shown = "n/a (no train jobs)" if math.isnan(ratio) else f"{ratio:.3f}"
    lines.append(f"scoring/training: {shown} ({' + '.join(SCORING)}: {scoring:.1f} job-s; "
                 f"{' + '.join(TRAINING)}: {train:.1f} job-s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Reads DIR/RULE/*.tsv, the files of the rules' `benchmark:` directives.")
    p.add_argument("--dir", type=Path, default=Path("logs/benchmarks"), help="benchmark root (default: %(default)s)")
    p.add_argument("--max-ratio", type=float, default=None, metavar="X",
                   help="exit 1 when scoring/training job-seconds exceeds X (the budget: 0.3)")
    p.add_argument("--params", type=Path, default=None, metavar="P",
                   help="also the job-seconds per block of P's grid and their least wall time on --cores")
    p.add_argument("--cores", type=int, default=2, help="cores for the least wall time (default: %(default)s)")
    p.add_argument("--budget-minutes", type=float, default=None, metavar="M",
                   help="with --params: exit 1 when the least wall time exceeds M minutes (issue 25: 25)")
    a = p.parse_args(argv)
    if a.budget_minutes is not None and a.params is None:
        print("error: --budget-minutes needs --params (the grid whose jobs it bounds)", file=sys.stderr)
        return 2
    if a.cores < 1:
        print(f"error: --cores {a.cores}: give at least 1", file=sys.stderr)
        return 2
    try:
        params = None if a.params is None else P.load(a.params)
        jobs = read_jobs(a.dir)
    except (ValueError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    totals = job_seconds(jobs)
    if not totals:
        print(f"error: no benchmark files under {a.dir}/RULE/*.tsv (run the pipeline with Snakemake first)",
              file=sys.stderr)
        return 2
    print(table(totals))
    status = 0
    if a.params is not None:
        shown, least = block_table(by_block(jobs, params), a.cores)
        print(shown)
        if a.budget_minutes is not None and least > 60 * a.budget_minutes:
            print(f"over budget: at least {least / 60:.1f} min on {a.cores} cores > {a.budget_minutes:g} min",
                  file=sys.stderr)
            status = 1
    if a.max_ratio is None:
        return status
    ratio = budget(totals)[2]
    if math.isnan(ratio):
        print(f"error: no train jobs under {a.dir}: the ratio to --max-ratio {a.max_ratio} is undefined",
              file=sys.stderr)
        return 2
    if ratio > a.max_ratio:
        print(f"over budget: scoring/training {ratio:.3f} > {a.max_ratio}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
