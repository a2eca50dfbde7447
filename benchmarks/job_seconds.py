"""Job-seconds per Snakemake rule, from the benchmark files the rules write, and the scoring budget.

    python benchmarks/job_seconds.py [--dir logs/benchmarks] [--max-ratio 0.3]

The train, sample, evaluate and curve rules (workflow/rules/train.smk, evaluate.smk) each write
Snakemake's benchmark TSV, logs/benchmarks/RULE/EXPERIMENT.tsv: a header, then one row per run of the
job (several under Snakemake's `repeat`), its wall seconds in column `s` and its CPU seconds in
`cpu_time` (NA where Snakemake could not sample the process). A job's seconds are the mean of its rows.

Prints per rule the jobs, their total job-seconds (wall) and CPU seconds, and the scoring budget:
the job-seconds of the scoring stages (sample + evaluate + curve) over those of training (issue 25,
item 11: at most 0.3). Exit status: 0; 1 when --max-ratio is given and the ratio exceeds it; 2 when
there is nothing to measure (no benchmark files, or --max-ratio without any train job).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

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


def job_seconds(root: Path) -> dict[str, dict]:
    """Per rule (a directory under root): {"jobs", "seconds", "cpu_seconds"} over its *.tsv files;
    cpu_seconds sums the jobs where Snakemake sampled the CPU time (NaN where it sampled none)."""
    totals = {}
    for rule_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        jobs = [read_benchmark(p) for p in sorted(rule_dir.glob("*.tsv"))]
        if jobs:
            cpu = [c for _, c in jobs if not math.isnan(c)]
            totals[rule_dir.name] = {"jobs": len(jobs), "seconds": sum(s for s, _ in jobs),
                                     "cpu_seconds": sum(cpu) if cpu else math.nan}
    return totals


def budget(totals: dict[str, dict]) -> tuple[float, float, float]:
    """(scoring, training, scoring / training) job-seconds: sample + evaluate + curve, and train; the
    ratio NaN without train jobs."""
    scoring = sum(totals[r]["seconds"] for r in SCORING if r in totals)
    train = sum(totals[r]["seconds"] for r in TRAINING if r in totals)
    return scoring, train, scoring / train if train > 0 else math.nan


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
    a = p.parse_args(argv)
    try:
        totals = job_seconds(a.dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not totals:
        print(f"error: no benchmark files under {a.dir}/RULE/*.tsv (run the pipeline with Snakemake first)",
              file=sys.stderr)
        return 2
    print(table(totals))
    if a.max_ratio is None:
        return 0
    ratio = budget(totals)[2]
    if math.isnan(ratio):
        print(f"error: no train jobs under {a.dir}: the ratio to --max-ratio {a.max_ratio} is undefined",
              file=sys.stderr)
        return 2
    if ratio > a.max_ratio:
        print(f"over budget: scoring/training {ratio:.3f} > {a.max_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
