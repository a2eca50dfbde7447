"""Paper presets (METHODS 7): they validate, `describe` shows EDM's parameter counts, and two
training steps at batch 2 run on a CPU. Their real runs need GPUs and the real data sets."""
import numpy as np
import pytest
import yaml

from conftest import ROOT, ctc
from ctcoupling import describe, training
from ctcoupling import params as P

ENCODERS = {"cifar10_ict.yaml": 1_562_246, "cifar10_ecm.yaml": 1_562_246}  # VCT's "small" encoder: ~1.56M
PRESETS = {  # preset -> parameters of the network its grid trains (EDM's SongUNet counts)
    "cifar10_ict.yaml": 55_732_739,
    "cifar10_ecm.yaml": 55_732_739,
    "cifar10_gc_net.yaml": 34_711_811,
    "ffhq64_ecm.yaml": 61_804_419,
    "fashion_mnist_ict.yaml": None,  # sony/vct's README command (tests/test_official.py); no published count
}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_describes_the_published_network(name):
    rows = describe.describe(P.load(ROOT / "params" / name))
    assert {r["experiment"].split("-")[2] for r in rows} >= {"ic"} and len(rows) >= 2
    for r in rows:
        if PRESETS[name]:
            assert r["network_parameters"] == PRESETS[name]
        assert r["schedule"]
        if r["encoder"] and name in ENCODERS:
            assert r["encoder_parameters"] == ENCODERS[name]
    assert any(r["encoder"] for r in rows) == (name != "cifar10_gc_net.yaml")


def test_describe_cli_prints_counts():
    p = ctc("describe", "--params", "params/cifar10_ict.yaml", cwd=ROOT)
    assert "55,732,739 parameters (55.73M)" in p.stdout and "N =  1281 for steps 350000-399999" in p.stdout
    assert "vc, encoder small_encoder: 1,562,246 parameters (1.56M)" in p.stdout
    assert "train job         4 GPU(s) (torchrun, 4 ranks of batch 128), 16 CPU thread(s), 128000 MB, 2880 min" \
        in p.stdout  # train.gpus, threads and resources.jobs.train of the preset
    js = ctc("describe", "--params", "params/cifar10_gc_net.yaml", "--json", cwd=ROOT)
    rows = yaml.safe_load(js.stdout)
    assert len(rows) == 9 and all(r["network_parameters"] == 34_711_811 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_two_steps_on_cpu(name):
    params = P.load(ROOT / "params" / name)
    exp = P.experiments(params)[-1]  # the coupling of the paper (VC or GC)
    # one process here: the preset's train.gpus is how its job is launched (tests/test_training.py runs 2 ranks)
    config = P.deep_merge(exp.config, {"train": {"steps": 2, "batch": 2, "checkpoint_every": 10, "gpus": 1}})
    shape = describe.data_shape(params, exp.dataset)
    x = np.random.default_rng(0).integers(0, 256, (4, *shape), dtype=np.uint8).astype(np.float32) / 127.5 - 1
    ckpt, log, _ = training.train(config, x, progress=False)
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    trained = sum(v.numel() for k, v in ckpt["model"].items() if not k.endswith("resample_filter"))
    if PRESETS[name]:
        assert trained == PRESETS[name]
