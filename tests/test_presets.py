"""Paper presets (METHODS 7): they validate, `describe` shows EDM's parameter counts, and two
training steps at batch 2 run on a CPU. Their real runs need GPUs and the real data sets."""
import numpy as np
import pytest
import yaml

import official_files
from conftest import ROOT, ctc
from ctcoupling.pipeline import describe
from ctcoupling.train import training
from ctcoupling.config import params as P

ENCODERS = {"cifar10_ict.yaml": 1_562_246, "cifar10_ecm.yaml": 1_562_246, "cifar10_sct.yaml": 1_562_246,
            # VCT's "small" encoder: ~1.56M
            "imagenet64_ecm_vc.yaml": 6_162_269}  # encoder_size=big on EDM2 (tests/test_networks.py)
PRESETS = {  # preset -> parameters of the network its grid trains (the official code's counts)
    "cifar10_ict.yaml": 55_732_739,
    "cifar10_ecm.yaml": 55_732_739,
    "cifar10_sct.yaml": 55_732_739,  # sCT's DDPM++ (Lu & Song 2025 App. G.1: Score-SDE's, as EDM's)
    "cifar10_gc_net.yaml": 34_711_811,
    "ffhq64_ecm.yaml": 61_804_419,
    "fashion_mnist_ict.yaml": None,  # sony/vct's README command (tests/test_official.py); no published count
    "imagenet64_ecm_vc.yaml": 280_209_253,  # sony/vct's EDM2 "S" (tests/test_networks.py)
    "imagenet32_ict_gc.yaml": 39_479_683,  # consistency_GC's SongUNet (tests/test_networks.py)
    "celeba64_ict_gc.yaml": 59_582_723,
    "lsun_church64_ict_gc.yaml": 59_582_723,  # CelebA 64's network (no LSUN config published)
}
GC_NETS = {"cifar10_gc_net.yaml", "imagenet32_ict_gc.yaml", "celeba64_ict_gc.yaml", "lsun_church64_ict_gc.yaml"}


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
    assert any(r["encoder"] for r in rows) == (name not in GC_NETS)


def test_describe_cli_prints_counts():
    p = ctc("describe", "--params", "params/cifar10_ict.yaml", cwd=ROOT)
    assert "55,732,739 parameters (55.73M)" in p.stdout and "N =  1281 for steps 350000-399999" in p.stdout
    assert "vc, encoder small_encoder: 1,562,246 parameters (1.56M)" in p.stdout
    assert "train job         4 GPU(s) (torchrun, 4 ranks of batch 128), 16 CPU thread(s), 128000 MB, 2880 min" \
        in p.stdout  # train.gpus, threads and resources.jobs.train of the preset
    js = ctc("describe", "--params", "params/cifar10_gc_net.yaml", "--json", cwd=ROOT)
    rows = yaml.safe_load(js.stdout)
    assert len(rows) == 9 and all(r["network_parameters"] == 34_711_811 for r in rows)


@pytest.mark.full
@pytest.mark.parametrize("name", [p for p in PRESETS if p not in GC_NETS | {"imagenet64_ecm_vc.yaml"}]
                         + ["cifar10_gc_net.yaml"])  # the others: end to end on their data formats, below
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
    # sCT's model also holds the adaptive weighting's head beside the network (edm2
    # training/networks_edm2.py Precond: logvar_fourier = MPFourier(C) with its freqs and phases,
    # logvar_linear = MPConv(C, 1, kernel=[])): C weights and 2 C buffers, which `describe` leaves out
    head = 3 * exp.config["objective"].get("logvar_channels", 0) if exp.config["objective"]["kind"] == "sct" else 0
    if PRESETS[name]:
        assert trained == PRESETS[name] + head


# ---------------------------------------------------------------------------------------------
# The presets of issue 15, end to end on CPU: tiny files in their data sets' official formats go through
# the real prepare, train (2 steps at batch 2, the full-size networks), sample and evaluate commands,
# FID on Inception-v3 with random weights (the real weights are not downloadable here).


def _imagenet64(raw):
    official_files.edm_zip(raw / "imagenet-64x64.zip", n=10, size=64)  # labels 0, 1, 2 in dataset.json
    return {"source": "edm_zip", "path": str(raw / "imagenet-64x64.zip"), "resolution": 64, "n_test": 4, "seed": 0}


def _imagenet32(raw):
    official_files.imagenet_dir(raw / "imagenet32", 32, per_batch=1, n_val=4)  # labels 1-based in the files
    return {"source": "imagenet_npz", "path": str(raw / "imagenet32"), "resolution": 32}


def _celeba64(raw):
    official_files.celeba(raw)  # 178x218 JPEGs: 8 train, 2 valid, 8 test
    return {"source": "celeba", "path": str(raw / "img_align_celeba.zip"),
            "partition": str(raw / "list_eval_partition.txt"), "resolution": 64, "check_md5": False}


def _lsun_church64(raw):
    official_files.lsun(raw / "church", {f"{k:040x}".encode(): official_files.photo(96 + k, 80, k) for k in range(10)})
    return {"source": "lsun", "path": str(raw / "church"), "resolution": 64, "n_test": 4, "seed": 0}


DATA_FORMATS = {"imagenet64_ecm_vc.yaml": _imagenet64, "imagenet32_ict_gc.yaml": _imagenet32,
                "celeba64_ict_gc.yaml": _celeba64, "lsun_church64_ict_gc.yaml": _lsun_church64}


@pytest.mark.full
@pytest.mark.parametrize("name", DATA_FORMATS)
def test_new_preset_runs_end_to_end_on_its_official_data_format(name, tmp_path, monkeypatch, fake_inception):
    from ctcoupling import cli

    params = yaml.safe_load((ROOT / "params" / name).read_text())
    (ds,) = params["datasets"]
    (tmp_path / "raw").mkdir()
    params["datasets"][ds] = DATA_FORMATS[name](tmp_path / "raw")
    cell = params["grid"][0]
    paper = cell["coupling"][-1]  # VC or GC: the coupling of the paper
    params["grid"] = [dict(cell, coupling=[paper], seed=[0])]
    params["train"].update(steps=2, batch=2, checkpoint_every=10, log_every=1, gpus=1)
    params["sample"].update(n=4, batch=2)
    params["evaluate"]["n"] = 4
    weights, sha = fake_inception
    params["evaluate"]["fidelity"].update(metrics=["fid"], n=4, batch=2, inception_weights=str(weights),
                                          inception_sha256=sha)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    exp = P.experiments(P.load(tmp_path / "params.yaml"))[0].name
    for argv in (["prepare", "--dataset", ds], ["train", "--experiment", exp], ["sample", "--experiment", exp],
                 ["evaluate", "--experiment", exp]):
        assert cli.main([argv[0], "--params", "params.yaml", *argv[1:]]) == 0, argv

    import json

    import torch

    prepared = np.load(f"data/{ds}.npz")
    shape = describe.data_shape(params, ds)
    assert prepared["x_train"].shape[1:] == shape and prepared["x_train"].dtype == np.uint8
    conditional = bool(params["networks"][params["train"]["network"]].get("label_dim"))
    assert ("y_train" in prepared.files) == (conditional or name == "imagenet32_ict_gc.yaml")
    from ctcoupling.model import networks

    ckpt = torch.load(f"runs/{exp}/model.pt", map_location="cpu", weights_only=True)
    assert networks.count_params(training.load_model(ckpt).net) == PRESETS[name]
    samples = np.load(f"runs/{exp}/samples.npz")
    assert samples["x"].shape == (4, *shape) and samples["x"].dtype == np.uint8
    assert ("y" in samples.files) == conditional  # class-balanced labels, saved with the samples
    if conditional:
        assert samples["y"].tolist() == [0, 1, 2, 3]
    record = json.loads(open(f"runs/{exp}/eval.json").read())
    assert np.isfinite(record["metrics"]["w2"])
    fid = record["fidelity"]
    assert fid["available"] and fid["fid_protocol"] == params["evaluate"]["fidelity"]["protocol"]
    assert [r["nfe"] for r in fid["runs"]] == params["evaluate"]["fidelity"]["steps"]
    assert all(np.isfinite(r["fid"]) for r in fid["runs"])


def test_sct_imagenet64_preset_has_the_four_edm2_sizes_and_says_what_differs():
    """EDM2's S / M / L / XL (NVlabs/edm2 training/networks_edm2.py at 192 / 256 / 320 / 384 channels:
    280.2M / 497.8M / 777.5M / 1119.3M; sCM's Table 4 lists 777.6M / 1119.4M with its adaptive double
    normalisation, which `describe` names), each mapped to its official run, whose only differing
    setting is the unreleased teacher, with its reason."""
    rows = describe.describe(P.load(ROOT / "params" / "imagenet64_sct.yaml"))
    counts = {r["experiment"].split("-")[2]: r["network_parameters"] for r in rows}
    assert counts == {"ic_s": 280_209_253, "ic_m": 497_803_045, "ic_l": 777_492_197, "ic_xl": 1_119_276_709}
    for r in rows:
        assert r["official"] == f"sct_imagenet64_{r['experiment'].split('-')[2][3:]}"
        assert [d["key"] for d in r["deviations"]] == ["train.init"] and r["deviations"][0]["why"]
        assert r["settings"]["sample"]["t_mid"] == [1.1] and r["settings"]["objective"]["P_std"] == 1.6
    text = describe.text(rows, "imagenet64_sct.yaml")
    assert "adaptive double normalisation" in text and "not stated" in text and "tangent warm-up" in text
