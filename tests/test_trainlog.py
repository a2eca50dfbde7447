"""The training log through DVCLive (the record) and TensorBoard (live, optional): ctcoupling.train.trainlog."""
import json
import sys

import pytest
from conftest import copy_project, ctc

from ctcoupling.train import trainlog

ROWS = [{"step": 0, "loss": 1.5, "grad_norm": 3.0, "lr": 1e-3, "N": 10, "kl": 0.25},
        {"step": 5, "loss": 0.123456789012345678, "grad_norm": 2.5, "lr": 1e-3, "N": 12, "kl": 0.5},
        {"step": 9, "loss": 1e-9, "grad_norm": 2.0, "lr": 5e-4, "N": 12, "kl": 0.75}]


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dvclive_log_holds_every_row_and_the_last_as_metrics(tmp_path):
    trainlog.write_dvclive(ROWS, tmp_path / "dvclive")
    got = trainlog.read_dvclive(tmp_path / "dvclive")
    assert set(got) == {"loss", "grad_norm", "lr", "N", "kl"}
    for name in got:
        assert got[name] == [(r["step"], float(r[name])) for r in ROWS], name  # every value, full precision
    summary = json.loads((tmp_path / "dvclive/metrics.json").read_text())
    assert summary == {**{k: v for k, v in ROWS[-1].items()}}  # DVC's metrics: the last row, its step
    headers = {p.read_text().splitlines()[0] for p in (tmp_path / "dvclive/plots/metrics").glob("*.tsv")}
    assert all(h.split("\t")[0] == "step" and "timestamp" not in h for h in headers), headers  # no wall clock
    assert set(_files(tmp_path / "dvclive")) == {"metrics.json"} | {f"plots/metrics/{n}.tsv" for n in got}


def test_dvclive_log_is_bitwise_repeatable_and_replaced_whole(tmp_path):
    trainlog.write_dvclive(ROWS, tmp_path / "a")
    trainlog.write_dvclive(ROWS[:1], tmp_path / "b")
    trainlog.write_dvclive(ROWS, tmp_path / "b")  # over a shorter log: nothing of it left
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary directories left


def test_a_failed_dvclive_write_leaves_the_previous_log(tmp_path, monkeypatch):
    import dvclive

    trainlog.write_dvclive(ROWS, tmp_path / "dvclive")
    before = _files(tmp_path / "dvclive")
    calls = []

    def fail(self, name, value, *a, **k):
        calls.append(name)
        if len(calls) > 3:
            raise OSError("disk full")
        return original(self, name, value, *a, **k)

    original = dvclive.Live.log_metric
    monkeypatch.setattr(dvclive.Live, "log_metric", fail)
    with pytest.raises(OSError, match="disk full"):
        trainlog.write_dvclive(ROWS[:2], tmp_path / "dvclive")
    assert _files(tmp_path / "dvclive") == before
    assert [p.name for p in tmp_path.iterdir()] == ["dvclive"]


def test_tensorboard_receives_each_row_live_and_stays_out_of_the_outputs(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    project = copy_project(tmp_path / "project")
    ctc("prepare", "--params", "params/smoke.yaml", "--dataset", "two_gaussians", cwd=project)
    exp = "two_gaussians-ict-vc-s0"
    ctc("train", "--params", "params/smoke.yaml", "--experiment", exp, "--quiet", "--tensorboard", "tb", cwd=project)
    events = EventAccumulator(str(project / "tb" / exp))
    events.Reload()
    logged = trainlog.read_dvclive(project / "runs" / exp / "dvclive")
    assert set(events.Tags()["scalars"]) == set(logged)  # loss, lr, VC's kl and posterior stats, ...
    for name, history in logged.items():
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars(name)] == history, name
    assert not list((project / "runs" / exp).rglob("*tfevents*"))  # wall-clock stamped: never an output


def test_tensorboard_through_the_environment_for_pipeline_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv(trainlog.TENSORBOARD_ENV, str(tmp_path / "tb"))
    assert trainlog.tensorboard_dir(None, "x-ict-ic-s0") == tmp_path / "tb" / "x-ict-ic-s0"
    assert trainlog.tensorboard_dir("other", "x-ict-ic-s0").as_posix() == "other/x-ict-ic-s0"  # the flag wins
    monkeypatch.delenv(trainlog.TENSORBOARD_ENV)
    assert trainlog.tensorboard_dir(None, "x-ict-ic-s0") is None


def test_tensorboard_without_the_package_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(trainlog.UserError, match=r"needs the tensorboard package; install it with"):
        trainlog.TensorBoardLog(tmp_path / "tb")
