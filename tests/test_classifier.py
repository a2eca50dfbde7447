"""The digits classifier: deterministic training, held-out accuracy, and its torch-fidelity extractor."""
import numpy as np
import pytest
import torch
from torch_fidelity.utils import create_feature_extractor

from ctcoupling.core import artifacts
from ctcoupling.data import datasets
from ctcoupling.measure import fidelity
from ctcoupling.data.classifier import EXTRACTOR, FEATURES, load_classifier, train_classifier
from ctcoupling.core.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return datasets.build({"source": "digits", "n_test": 297, "seed": 0})


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """(state, accuracy, path of the saved state): the default training on the digits train split."""
    state, acc = train_classifier(digits["x_train"], digits["y_train"], digits["x_test"], digits["y_test"], seed=0)
    path = tmp_path_factory.mktemp("classifier") / "classifier.pt"
    artifacts.write_torch(path, state)
    return state, acc, path


def test_training_is_bitwise_deterministic(digits):
    args = digits["x_train"], digits["y_train"], digits["x_test"], digits["y_test"]
    (a, acc_a), (b, acc_b) = (train_classifier(*args, seed=3, epochs=2) for _ in range(2))
    assert acc_a == acc_b and a.keys() == b.keys() and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert {k: v for k, v in a.items() if k != "model"} == {k: v for k, v in b.items() if k != "model"}
    c, _ = train_classifier(*args, seed=4, epochs=2)
    assert not torch.equal(a["model"]["head.weight"], c["model"]["head.weight"])


def test_training_leaves_global_rng_and_threads_alone(digits):
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(digits["x_train"][:64], digits["y_train"][:64], digits["x_test"][:8], digits["y_test"][:8],
                     seed=0, epochs=1)
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads


def test_digits_held_out_accuracy(trained):
    state, acc, path = trained
    assert acc >= 0.95
    loaded = torch.load(path, weights_only=True)  # plain tensors and hyperparameters only
    assert loaded["model"].keys() == state["model"].keys() and loaded["feature_dim"] == 64


def test_features_have_unit_rms_on_train(trained, digits):
    net = load_classifier(trained[0])
    with torch.no_grad():
        f = net.features(torch.from_numpy(digits["x_train"]))
    assert f.shape == (1500, 64)
    assert f.square().mean().sqrt().item() == pytest.approx(1.0, rel=1e-4)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_other_image_shapes_train(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, *shape), dtype=np.uint8)
    y = np.arange(40) % 3
    state, acc = train_classifier(x[:32], y[:32], x[32:], y[32:], seed=0, epochs=1)
    assert 0.0 <= acc <= 1.0 and state["image_shape"] == list(shape)
    f, logits = load_classifier(state)(torch.from_numpy(x[:5]))
    assert f.shape == (5, 64) and logits.shape == (5, 3)


def test_registered_extractor_features(trained, digits):
    state, _, path = trained
    fe = create_feature_extractor(EXTRACTOR, ["logits_unbiased", FEATURES, "logits"], cuda=False,
                                  feature_extractor_weights_path=str(path), verbose=False)
    x = torch.from_numpy(digits["x_test"][:10])
    unbiased, feats, logits = fe(x)  # in the requested order
    assert feats.shape == (10, 64) and unbiased.shape == (10, 10) and logits.shape == (10, 10)
    assert torch.allclose(unbiased + state["model"]["head.bias"], logits, atol=1e-5)
    assert fe.get_default_feature_layer_for_metric("fid") == FEATURES
    assert fe.get_default_feature_layer_for_metric("isc") == "logits_unbiased"
    with pytest.raises(UserError, match="weights"):
        create_feature_extractor(EXTRACTOR, [FEATURES], cuda=False, verbose=False)


def test_every_thread_pool_of_the_test_process_has_one_thread():
    """conftest's limit reaches numpy's OpenBLAS (loaded with torch, before conftest ran), scipy's and torch's
    OpenMP: with two threads on cores the background runs keep busy, CI stopped inside the FID test below."""
    import scipy.linalg  # noqa: F401  (its OpenBLAS, loaded here if no test before did)
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    assert {p["internal_api"] for p in pools} >= {"openblas", "openmp"}
    assert [p["num_threads"] for p in pools] == [1] * len(pools), pools


def test_digits_fid_train_vs_test_is_small(trained, digits, tmp_path):
    """FID on classifier features: the held-out digits are close to the training digits, uniform noise
    and pixel-shuffled digits (same pixel histogram, no strokes) are far."""
    _, _, path = trained
    rng = np.random.default_rng(0)
    test = digits["x_test"]
    noise = rng.integers(0, 256, test.shape, dtype=np.uint8)
    flat = test.reshape(len(test), -1)
    shuffled = np.stack([row[rng.permutation(flat.shape[1])] for row in flat]).reshape(test.shape)
    out = {name: fidelity.compute(g, digits["x_train"], EXTRACTOR, path, tmp_path / "cache", "digits-train",
                                  metrics=fidelity.METRICS if name == "test" else ("fid", "prc"))
           for name, g in [("test", test), ("noise", noise), ("shuffled", shuffled)]}  # KID is the slow one
    assert set(out["test"]) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"}
    assert out["test"]["fid"] < 1.0
    assert out["noise"]["fid"] > 10 * out["test"]["fid"] and out["shuffled"]["fid"] > 10 * out["test"]["fid"]
    assert out["test"]["precision"] > 0.8 > out["shuffled"]["precision"]
    assert out["test"]["is_mean"] > 7.0  # ten classes, confidently recognised


def test_digits_sizes_kid_and_prc(trained, digits, tmp_path):
    """1024 generated against the 1500 training digits: KID on subsets of 1000, PRC at these sizes."""
    _, _, path = trained
    generated = np.concatenate([digits["x_test"], digits["x_train"][:727]])  # 1024 images
    out = fidelity.compute(generated, digits["x_train"], EXTRACTOR, path, tmp_path, "digits-train",
                           metrics=("kid", "prc"))
    assert set(out) == {"kid_mean", "kid_std", "precision", "recall"}
    assert abs(out["kid_mean"]) < 0.05 and out["precision"] > 0.9 and out["recall"] > 0.9


def test_inception_score_alone_leaves_the_reference_alone(trained, digits, tmp_path):
    _, _, path = trained
    out = fidelity.compute(digits["x_test"], digits["x_train"], EXTRACTOR, path, tmp_path / "cache", "digits-train",
                           metrics=("isc",))
    assert set(out) == {"is_mean", "is_std"} and out["is_mean"] > 7.0
    assert not list((tmp_path / "cache").iterdir())


FIDELITY = {"features": "classifier", "metrics": ["fid", "kid", "isc", "prc"], "reference": "train", "stream": True,
            "n": 300, "seeds": [0, 1], "steps": [1, 2], "batch": 128, "inception_weights": None,
            "inception_sha256": None}


def test_streamed_evaluation_runs_every_nfe_and_seed(trained, digits, tmp_path):
    """fidelity.evaluate in stream mode: one torch-fidelity run per (NFE, seed), each fed batch by batch
    from make_stream, summarised as mean ± std over seeds; the same streams give the same record."""
    _, _, path = trained
    calls = []

    def make_stream(nfe, seed):
        def batch(b):
            calls.append((nfe, seed, b))
            g = torch.Generator().manual_seed(1000 * nfe + 10 * seed + b)
            idx = torch.randint(len(digits["x_test"]), (128,), generator=g)
            return torch.from_numpy(digits["x_test"])[idx]  # real digits: a 'model' that memorised the test split
        return fidelity.SampleStream(batch, FIDELITY["n"], FIDELITY["batch"])

    runs = [fidelity.evaluate(FIDELITY, digits["x_train"], "digits-train", path, make_stream=make_stream,
                              cache=tmp_path) for _ in range(2)]
    rec = runs[0]
    assert rec["available"] and rec["steps"] == [1, 2] and rec["n_generated"] == 300
    assert [(r["nfe"], r["seed"]) for r in rec["runs"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert len(calls) == 2 * 4 * 3  # two evaluations x four streams x ceil(300/128) batches
    assert set(rec["summary"]) == {"1", "2"} and rec["summary"]["1"]["fid"]["n"] == 2
    assert rec["summary"]["1"]["fid"]["std"] is not None and rec["summary"]["1"]["fid"]["mean"] < 5
    assert runs[0]["summary"] == runs[1]["summary"]


def test_missing_inception_weights_give_an_unavailable_record(digits, monkeypatch, tmp_path):
    monkeypatch.delenv(fidelity.INCEPTION_ENV, raising=False)
    spec = FIDELITY | {"features": "inception", "stream": False, "n": None}
    rec = fidelity.evaluate(spec, digits["x_train"], "digits-train", samples=digits["x_test"], sample_nfe=2,
                            cache=tmp_path)
    assert rec["available"] is False and rec["steps"] == [2] and rec["runs"] == []
    assert fidelity.INCEPTION_URL in rec["reason"] and fidelity.INCEPTION_ENV in rec["reason"]
    assert "\n" not in rec["reason"]
