"""Training loop: optimisers, schedules, EMA, divergence guard, bitwise resume after a kill, DDP."""
import hashlib
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ENV, ctc, write_params
from proctree import with_descendants
from ctcoupling.train import optim
from ctcoupling.train import training
from ctcoupling.config import params as P
from ctcoupling.core.errors import UserError
from ctcoupling.train.randomness import EpochSampler


def test_lion_update_is_a_signed_step():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = optim.Lion([p], lr=0.1, betas=(0.9, 0.99))
    p.grad = torch.tensor([0.5, -0.1, 0.0])
    opt.step()
    torch.testing.assert_close(p.data, torch.tensor([0.9, -1.9, 3.0]))
    torch.testing.assert_close(opt.state[p]["exp_avg"], 0.01 * torch.tensor([0.5, -0.1, 0.0]))


def test_learning_rate_schedules():
    assert optim.learning_rate({"lr": 1e-3, "lr_ref_steps": None}, 10**6) == 1e-3
    spec = {"lr": 1e-3, "lr_ref_steps": 1000}
    assert optim.learning_rate(spec, 500) == 1e-3
    assert math.isclose(optim.learning_rate(spec, 4000), 1e-3 / 2)


def test_ema_decays():
    assert optim.ema_decay({"ema": 0.999, "ema_gamma": None}, 5) == 0.999
    assert optim.ema_decay({"ema": 0.999, "ema_gamma": 6.94}, 0) == 0.0  # first step copies the weights
    assert math.isclose(optim.ema_decay({"ema": 0.999, "ema_gamma": 6.94}, 99), 0.99 ** 7.94)


def _config(tmp_path, **train):
    f = write_params(tmp_path / "p.yaml", train=train)
    return P.experiment(P.load(f), "two_gaussians-ict-ic-s0").config


def test_divergence_at_the_first_step_is_a_clear_error(tmp_path):
    config = _config(tmp_path, steps=6, checkpoint_every=2)
    x = np.full((64, 2), np.inf, dtype=np.float32)
    state = tmp_path / "state.pt"
    with pytest.raises(UserError, match="training diverged at step 0 .*lower train.lr"):
        training.train(config, x, state, progress=False)
    assert not state.exists()


def test_nan_guard_keeps_the_last_good_state(tmp_path, monkeypatch):
    config = _config(tmp_path, steps=8, checkpoint_every=2)
    x = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    real = training.objectives.ICTLoss.loss

    def poisoned(self, model, draws, coupling):
        loss, stats = real(self, model, draws, coupling)
        return (loss * math.nan if draws.step == 5 else loss), stats

    monkeypatch.setattr(training.objectives.ICTLoss, "loss", poisoned)
    state = tmp_path / "state.pt"
    with pytest.raises(UserError, match=f"diverged at step 5 .*the last good state is in {state}"):
        training.train(config, x, state, progress=False)
    assert torch.load(state, weights_only=True)["step"] == 4


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_sha(root):
    """relative path -> sha256 of every file under a directory (the DVCLive log)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files, f"{root}: empty"
    return {str(p.relative_to(root)): _sha(p) for p in files}


@pytest.mark.full
def test_killed_run_resumes_bitwise_identically(tmp_path):
    """SIGKILL a training run after its first checkpoints, resume it, compare with an uninterrupted run."""
    train = dict(steps=2500, batch=256, checkpoint_every=100, snapshot_every=250)
    nets = dict(mlp=dict(kind="mlp", hidden=64, depth=2, emb_dim=16, dropout=0.2))  # dropout: RNG state matters
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        write_params(tmp_path / d / "p.yaml", train=train, networks=nets)
        ctc("prepare", "--params", "p.yaml", "--dataset", "two_gaussians", cwd=tmp_path / d)
    args = ["train", "--params", "p.yaml", "--experiment", "two_gaussians-ict-ic-s0", "--quiet"]
    ctc(*args, cwd=tmp_path / "a")
    reference = tmp_path / "a/runs/two_gaussians-ict-ic-s0/model.pt"

    run_b = tmp_path / "b/runs/two_gaussians-ict-ic-s0"
    proc = subprocess.Popen([sys.executable, "-m", "ctcoupling", *args], cwd=tmp_path / "b", env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (run_b / "train_state.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it run on past the checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_b / "model.pt").exists()
    saved = torch.load(run_b / "train_state.pt", weights_only=True)["step"]
    assert 0 < saved < train["steps"]

    resumed = ctc(*args, "--resume", cwd=tmp_path / "b")
    assert f"resuming from step {saved} of {train['steps']}" in resumed.stderr
    assert _sha(run_b / "model.pt") == _sha(reference)
    assert _sha(run_b / "snapshots.pt") == _sha(reference.parent / "snapshots.pt")  # snapshots before the kill too
    snaps = torch.load(run_b / "snapshots.pt", weights_only=True)["snapshots"]
    assert [s["step"] for s in snaps] == list(range(250, 2500, 250))  # the final weights are model.pt's
    assert _tree_sha(run_b / "dvclive") == _tree_sha(reference.parent / "dvclive")  # the log of every step
    assert not (run_b / "train_state.pt").exists()


def test_resume_refuses_a_state_from_other_settings(tmp_path):
    config = _config(tmp_path, steps=6, checkpoint_every=2)
    x = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    state = tmp_path / "state.pt"
    training.train(config, x, state, progress=False)
    assert state.exists()
    config["train"] = dict(config["train"], lr=0.5)
    with pytest.raises(UserError, match="saved with other settings"):
        training.train(config, x, state, resume=True, progress=False)


def _launch(cwd, extra=(), background=False):
    """The train stage's command exactly as the pipeline (dvc.yaml, the Snakefile) writes it: torchrun
    (`python -m torch.distributed.run --standalone --nproc_per_node G -m ctcoupling`) where train.gpus > 1."""
    from ctcoupling.pipeline import dag as L

    params = P.load(cwd / "p.yaml")
    [stage] = [s for s in L.stages(params, "p.yaml") if s.name == "train-two_gaussians-ict-ic-s0"]
    cmd = stage.cmd + " --quiet --device cpu " + " ".join(extra)
    env = dict(ENV, OMP_NUM_THREADS="1")
    if background:
        return subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True), stage.cmd
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return p, stage.cmd


@pytest.mark.full
def test_two_ranks_through_the_launcher_match_one_and_resume_bitwise(tmp_path):
    """train.gpus: 2 runs the pipeline's train command under torchrun with 2 CPU ranks (gloo) on the same
    global batch. It equals the 1-process run up to float rounding: the ranks' gradient sum is the only
    reordered arithmetic, and after 1500 steps the weights differ by at most 1.3e-5 (measured), so the
    tolerance is atol 1e-4, rtol 1e-3. And a 2-rank run killed after a checkpoint resumes to the
    uninterrupted 2-rank run's bits (its weights, snapshots and log)."""
    train = dict(steps=1500, batch=64, checkpoint_every=50, snapshot_every=500)
    for d, gpus in (("one", 1), ("two", 2), ("killed", 2)):
        (tmp_path / d).mkdir()
        write_params(tmp_path / d / "p.yaml", train=dict(train, gpus=gpus))
        ctc("prepare", "--params", "p.yaml", "--dataset", "two_gaussians", cwd=tmp_path / d)
    _, plain = _launch(tmp_path / "one")
    _, launcher = _launch(tmp_path / "two")
    assert plain.startswith("python -m ctcoupling train")
    assert launcher.startswith("python -m torch.distributed.run --standalone --nproc_per_node 2 -m ctcoupling train")
    a = torch.load(tmp_path / "one/runs/two_gaussians-ict-ic-s0/model.pt", weights_only=True)
    b = torch.load(tmp_path / "two/runs/two_gaussians-ict-ic-s0/model.pt", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], atol=1e-4, rtol=1e-3)
    assert any(not torch.equal(b["model"][k], a["model"][k]) for k in a["model"])  # 2 ranks really ran
    torch.manual_seed(a["config"]["seed"])  # the initialisation both runs started from
    init = training.build_model(a["config"], (2,)).state_dict()
    assert sum((a["model"][k] - init[k]).abs().sum() for k in init) > 0.1  # training really moved the weights

    run = tmp_path / "killed/runs/two_gaussians-ict-ic-s0"
    proc, _ = _launch(tmp_path / "killed", background=True)
    deadline = time.time() + 300
    while not (run / "train_state.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    workers = with_descendants({proc.pid})  # torchrun's ranks run in sessions of their own
    assert len(workers) >= 3, "the run finished before it could be killed"  # bash, torchrun, 2 ranks
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(run / "train_state.pt", weights_only=True)["step"]
    assert 0 < saved < train["steps"] and not (run / "model.pt").exists()
    resumed, _ = _launch(tmp_path / "killed", ["--resume"])
    assert f"resuming from step {saved} of {train['steps']}" in resumed.stderr
    reference = tmp_path / "two/runs/two_gaussians-ict-ic-s0"
    for name in ("model.pt", "snapshots.pt"):
        assert _sha(run / name) == _sha(reference / name), name
    assert _tree_sha(run / "dvclive") == _tree_sha(reference / "dvclive")


def test_a_run_launched_with_other_than_train_gpus_processes_is_refused(tmp_path):
    config = _config(tmp_path, steps=2, gpus=2)
    x = np.zeros((64, 2), dtype=np.float32)
    with pytest.raises(UserError, match=r"train.gpus = 2 but this run has 1 process\(es\): launch it with "
                                        r"`python -m torch.distributed.run --standalone --nproc_per_node 2 "
                                        r"-m ctcoupling train ...`"):
        training.train(config, x, progress=False)


# ---------------------------------------------------------------------------------------------
# GPU-preset options (issue 12), checked on the CPU: channels-last memory order, bf16 autocast of the
# networks' bodies, torch.compile.

def _digits_vc_run(**train):
    """The smoke suite's digits VC run (U-Net and U-Net encoder, dropout 0.1) with train options."""
    from conftest import ROOT

    params = P.load(ROOT / "params" / "smoke.yaml")
    params["train"].update(train)
    exp = P.experiment(P.validate(params), "digits-ict-vc-s0")
    return training.Run(P.train_config(exp), (1, 8, 8), torch.device("cpu"))


def _steps(run, n=3):
    data = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (256, 1, 8, 8)).astype(np.float32))
    return [loss.item() for _, loss, _, _, _ in run.iterate(data, 0, n)]


def test_channels_last_is_the_same_math():
    plain, cl = _digits_vc_run(), _digits_vc_run(channels_last=True)
    conv = next(m.weight for m in cl.model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)
                and m.weight.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(_steps(cl), _steps(plain), rtol=1e-4)
    for k, v in plain.model.state_dict().items():
        torch.testing.assert_close(cl.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_runs_the_bodies_in_bf16_and_the_rest_in_fp32():
    run = _digits_vc_run(precision="bf16")
    dtypes = {}
    linear = next(m for m in run.model.net.modules() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Linear")
    linear.register_forward_hook(lambda m, i, o: dtypes.setdefault("body", o.dtype) and None)
    run.model.register_forward_hook(lambda m, i, o: dtypes.setdefault("model", o.dtype) and None)
    losses, fp32 = _steps(run), _steps(_digits_vc_run())
    assert dtypes == {"body": torch.bfloat16, "model": torch.float32}
    assert all(p.dtype == torch.float32 for p in run.trainable)
    assert np.isfinite(losses).all() and losses != fp32  # bf16 really ran, and stayed close
    np.testing.assert_allclose(losses, fp32, rtol=0.05)


@pytest.mark.full
@pytest.mark.skipif(not any(map(__import__("shutil").which, ("cc", "gcc", "g++"))), reason="torch.compile needs a C compiler")
def test_compiled_network_matches_eager_and_replays_the_dropout_mask(tmp_path):
    from ctcoupling.train.objectives import paired_passes

    def runs(dropout):
        nets = dict(mlp=dict(kind="mlp", hidden=32, depth=2, emb_dim=16, dropout=dropout))
        config = P.experiment(P.load(write_params(tmp_path / "p.yaml", networks=nets)), "two_gaussians-ict-ic-s0").config
        return [training.Run(P.deep_merge(config, {"train": {"compile": c}}), (2,), torch.device("cpu"))
                for c in (True, False)]

    data = torch.from_numpy(np.random.default_rng(0).standard_normal((256, 2)).astype(np.float32))
    losses = [[loss.item() for _, loss, _, _, _ in run.iterate(data, 0, 3)] for run in runs(0.0)]
    np.testing.assert_allclose(*losses, rtol=1e-4)  # without dropout: the eager numbers up to fusion rounding
    compiled = runs(0.2)[0]  # with dropout the masks are drawn differently from eager's, but within a step:
    x, s = torch.randn(64, 2), torch.full((64,), 2.0)
    student, teacher = paired_passes(compiled.net, x, s, x, s)
    torch.testing.assert_close(student, teacher)  # one dropout mask for student and teacher
    again, _ = paired_passes(compiled.net, x, s, x, s)
    assert not torch.allclose(again, student)  # a fresh mask on the next call


def test_uint8_images_train_bitwise_as_their_model_space_floats():
    """Images stay uint8 in memory and become model space per minibatch (a prepared ImageNet 64 is 15.7 GB
    as uint8, 63 GB as float32): the same run, bit for bit, as on data.to_model_space's floats."""
    from ctcoupling.data import datasets as D

    images = np.random.default_rng(0).integers(0, 256, (64, 1, 8, 8), dtype=np.uint8)
    runs = []
    for x in (images, D.to_model_space(images)):
        run = _digits_vc_run(hflip=True)
        runs.append(([loss.item() for _, loss, _, _, _ in run.iterate(torch.from_numpy(x), 0, 3)],
                     run.model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())


def test_class_conditional_training_needs_labels_in_range():
    config = {"network": {"kind": "edm2", "label_dim": 3}}
    with pytest.raises(UserError, match="has no labels"):
        training.class_labels(config, None, 4)
    with pytest.raises(UserError, match="outside 0..2"):
        training.class_labels(config, np.array([0, 1, 2, 3]), 4)
    with pytest.raises(UserError, match="4 int64 values for 5 images"):
        training.class_labels(config, np.arange(4), 5)
    assert training.class_labels({"network": {"kind": "mlp"}}, np.arange(4), 4) is None  # unconditional: unused
    assert training.class_labels(config, np.array([2, 0], np.int32), 2).dtype == np.int64


# ---------------------------------------------------------------------------------------------
# Minibatches per epoch (issue 24): every official loader shuffles once per epoch, without replacement.


def test_epoch_permutations_are_torch_distributed_samplers():
    """Epoch e's order is torch.utils.data.DistributedSampler's (shuffle=True, seed=base, set_epoch(e)),
    the sampler consistency_GC's train_consistency.py trains with."""
    from torch.utils.data import DistributedSampler

    sampler = EpochSampler(37, seed=5)
    oracle = DistributedSampler(range(37), num_replicas=1, rank=0, shuffle=True, seed=sampler.base)
    for epoch in (0, 1, 7):
        oracle.set_epoch(epoch)
        assert sampler.permutation(epoch).tolist() == list(oracle), epoch
    assert EpochSampler(37, seed=6).base != sampler.base


def test_epoch_minibatches_cover_every_example_once_per_epoch_and_split_ranks_disjointly():
    n, batch = 10, 4  # epochs end mid-batch: the remainder continues into the next epoch's order
    one = EpochSampler(n, seed=3)
    stream = torch.cat([one.indices(k, batch) for k in range(10)])  # 40 positions: 4 epochs
    for e in range(4):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n)), e
    assert not torch.equal(one.permutation(0), one.permutation(1))  # reshuffled each epoch
    ranks = [EpochSampler(n, 3, rank, 2) for rank in (0, 1)]
    for k in range(10):  # rank r: rows r*b:(r+1)*b of the 1-process global batch, as BatchRNG's draws
        assert torch.equal(torch.cat([r.indices(k, batch // 2) for r in ranks]), one.indices(k, batch))
    assert torch.equal(EpochSampler(n, 3).indices(7, batch), one.indices(7, batch))  # stateless: resumable
    assert not torch.equal(EpochSampler(n, 4).indices(7, batch), one.indices(7, batch))


def test_training_draws_each_example_once_per_epoch_and_replacement_stays_an_option(tmp_path):
    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)  # 6 distinct points, batch 2: 3 steps an epoch

    def seen(minibatch: str) -> list[list[int]]:
        config = _config(tmp_path, steps=6, batch=2, minibatch=minibatch)
        run = training.Run(config, (2,), torch.device("cpu"))
        return [sorted((run.minibatch(x, 2, step=k)[0][:, 0] / 2).long().tolist()) for k in range(6)]

    epochs = seen("epoch")
    assert sorted(sum(epochs[:3], [])) == sorted(sum(epochs[3:], [])) == list(range(6))
    config = _config(tmp_path, steps=6, batch=2, minibatch="replacement")
    run = training.Run(config, (2,), torch.device("cpu"))
    oracle = torch.Generator().manual_seed(config["seed"] + 1)  # the batch generator's uniform draws
    for k in range(3):
        assert torch.equal(run.minibatch(x, 2, step=k)[0], x[torch.randint(6, (2,), generator=oracle)])


def test_a_run_with_another_runs_training_settings_copies_it_bit_for_bit(tmp_path):
    """ic_paired differs from ic only in its sampler: `P.trained_by` maps it to ic, whose run it copies;
    the copy equals training it (checkpoint, snapshots, DVCLive log, train.json), and it needs ic's run."""
    import yaml

    def params(dest, couplings):
        write_params(dest / "p.yaml", train=dict(steps=300, batch=64, snapshot_every=100))
        p = yaml.safe_load((dest / "p.yaml").read_text())
        p["grid"] = [{"dataset": ["two_gaussians"], "objective": ["ict"], "coupling": couplings, "seed": [0]}]
        p["couplings"]["ic_paired"] = {"kind": "ic"}
        p.setdefault("overrides", {})["paired"] = {"match": {"coupling": ["ic_paired"]},
                                                   "set": {"sample": {"ot_pairing": True}}}
        (dest / "p.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        ctc("prepare", "--params", "p.yaml", "--dataset", "two_gaussians", cwd=dest)
        return P.load(dest / "p.yaml")

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert P.trained_by(params(a, ["ic", "ic_paired"])) == {"two_gaussians-ict-ic_paired-s0": "two_gaussians-ict-ic-s0"}
    assert P.trained_by(params(b, ["ic_paired"])) == {}
    train = ["train", "--params", "p.yaml", "--quiet", "--experiment"]
    missing = ctc(*train, "two_gaussians-ict-ic_paired-s0", cwd=a, check=False)
    assert missing.returncode != 0 and "run `ctcoupling train --experiment two_gaussians-ict-ic-s0` first" in missing.stderr
    assert "Traceback" not in missing.stderr and not (a / "runs/two_gaussians-ict-ic_paired-s0/model.pt").exists()
    ctc(*train, "two_gaussians-ict-ic-s0", cwd=a)
    copied = ctc(*train, "two_gaussians-ict-ic_paired-s0", cwd=a)
    assert "as two_gaussians-ict-ic-s0" in copied.stderr
    ctc(*train, "two_gaussians-ict-ic_paired-s0", cwd=b)  # no twin here: trained
    run_a, run_b = a / "runs/two_gaussians-ict-ic_paired-s0", b / "runs/two_gaussians-ict-ic_paired-s0"
    for f in ("model.pt", "snapshots.pt", "train.json"):
        assert _sha(run_a / f) == _sha(run_b / f), f
    assert _tree_sha(run_a / "dvclive") == _tree_sha(run_b / "dvclive")
