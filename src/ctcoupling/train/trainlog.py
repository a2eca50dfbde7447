"""The training log: DVCLive's files as the run's record, TensorBoard for watching a run live.

The training loop keeps its logged rows (step, loss, grad_norm, lr and the coupling's and objective's
statistics: N or the ECT stage, OT's and IC's batch costs, VC's kl and posterior stats, GC's fraction)
in memory and in its resumable state. At the end they go through DVCLive (`write_dvclive`), DVC's own
logger, into runs/EXP/dvclive/: `metrics.json` (the last row, which dvc.yaml declares as the stage's
metrics, so `dvc exp show` and `dvc metrics diff` read it) and `plots/metrics/NAME.tsv` (one history
per statistic, which `dvc plots show runs/EXP/dvclive/plots/metrics` draws). Written from the rows
once, at the end, into a temporary directory swapped in whole: a killed or resumed run leaves no
partial log under the final name, and a resumed run's log equals an uninterrupted one's bitwise.
DVCLive writes no timestamps (log_metric's default), no report and no dvc.yaml of its own here.

TensorBoard (`TensorBoardLog`, optional: `ctcoupling train --tensorboard DIR` or CTCOUPLING_TENSORBOARD)
receives each row as it is logged, for `tensorboard --logdir DIR` during a run. Its event files carry
wall-clock times, so they live outside the pipeline's outputs (logs/, say) and are never hashed.
"""
from __future__ import annotations

import os
from pathlib import Path

from ctcoupling.core import artifacts
from ctcoupling.core.errors import UserError

DVCLIVE_DIR = "dvclive"
TENSORBOARD_ENV = "CTCOUPLING_TENSORBOARD"


def _writer(directory: str):
    """DVCLive's Live, its writing only: without its repository integration (saving a DVC experiment,
    Studio, VS Code's signal files), which is DVC's business here (the files are the train stage's
    outputs), and which in dvclive 3.48 fails in a git repository without commits (scm.get_rev)."""
    from dvclive import Live

    class Writer(Live):
        def _init_dvc(self):  # no repository lookup: the experiment is `dvc exp run`'s, not DVCLive's
            pass

        def _init_studio(self):  # nothing sent anywhere
            self._studio_events_to_skip.update({"start", "data", "done"})

    return Writer(directory, resume=False, report=None, save_dvc_exp=False, dvcyaml=None, monitor_system=False)


def write_dvclive(rows: list[dict], directory: str | os.PathLike) -> None:
    """The rows through DVCLive into `directory` (replaced whole, atomically): each row's `step` is
    DVCLive's step and every other key a metric."""
    if not rows:
        raise ValueError("no training log rows to write")
    with artifacts.atomic_dir(directory) as tmp:
        with _writer(str(tmp)) as live:
            for row in rows:
                live.step = int(row["step"])
                for name, value in row.items():
                    if name != "step":
                        live.log_metric(name, value)


def read_dvclive(directory: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """name -> [(step, value)] from a DVCLive directory's histories (tests, notebooks)."""
    out = {}
    for tsv in sorted(Path(directory, "plots", "metrics").glob("*.tsv")):
        lines = tsv.read_text().splitlines()
        out[tsv.stem] = [(int(s), float(v)) for s, v in (ln.split("\t")[:2] for ln in lines[1:])]
    return out


class TensorBoardLog:
    """Each logged row as TensorBoard scalars under `directory` (needs the `tensorboard` package: the
    `tensorboard` extra)."""

    def __init__(self, directory: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard / CTCOUPLING_TENSORBOARD: TensorBoard logging needs the tensorboard "
                            "package; install it with `pip install -e '.[tensorboard]'`") from None
        self.writer = SummaryWriter(log_dir=str(directory))

    def __call__(self, row: dict) -> None:
        for name, value in row.items():
            if name != "step":
                self.writer.add_scalar(name, value, int(row["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tensorboard_dir(requested: str | None, experiment: str) -> Path | None:
    """Where a run's TensorBoard events go: DIR/EXPERIMENT for `--tensorboard DIR`, else for the
    CTCOUPLING_TENSORBOARD environment variable (which reaches the pipeline's train jobs); None: off."""
    root = requested or os.environ.get(TENSORBOARD_ENV)
    return Path(root, experiment) if root else None
