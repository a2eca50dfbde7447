"""The torch-fidelity front end: weights resolution and checks, content-keyed reference cache,
streaming of generated samples, and the whole Inception path on random weights (offline)."""
import hashlib
import math

import numpy as np
import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
import torch_fidelity.utils as tf_utils
from torch.utils.data import DataLoader

from ctcoupling import fidelity
from ctcoupling.errors import UserError
from ctcoupling.fidelity import SampleStream


def _no_download(*args, **kwargs):
    raise AssertionError("torch-fidelity tried to download Inception weights")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any attempt to fetch the Inception weights fails the test."""
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", _no_download)


def blobs(n: int, seed: int, channels: int = 3, size: int = 32) -> np.ndarray:
    """Smooth random uint8 images (N, C, size, size): a few Gaussian blobs each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((n, channels, size, size))
    for _ in range(3):
        cy, cx, w = rng.random((3, n, 1, 1, 1))
        amp = rng.random((n, channels, 1, 1))
        out += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 + 0.1 * w))
    return np.rint(255 * out / out.max()).astype(np.uint8)


@pytest.mark.slow  # CPU Inception at 299x299: 88 images, 10-20 s on 2 idle cores
def test_inception_path_end_to_end(fake_inception, tmp_path, monkeypatch):
    """Weights check, streaming, metrics and the reference cache through torch-fidelity's Inception.

    The weights are random, so the metric VALUES ARE MEANINGLESS: this checks the plumbing only
    (finite numbers, cache hits, one generation per batch, a deterministic result)."""
    path, sha = fake_inception
    reference = blobs(40, seed=1)
    generated = blobs(24, seed=2)
    calls = []

    def generate_batch(b):
        calls.append(b)
        return torch.from_numpy(generated[b * 10:(b + 1) * 10])

    extractions = []
    real_extract = tf_utils.get_featuresdict_from_dataset
    monkeypatch.setattr(tf_utils, "get_featuresdict_from_dataset",
                        lambda input, *a, **k: extractions.append(len(input)) or real_extract(input, *a, **k))
    monkeypatch.setenv(fidelity.INCEPTION_ENV, str(path))
    cache = tmp_path / "cache"
    kw = dict(extractor=fidelity.INCEPTION, cache_dir=cache, reference_key="blobs", batch=16, weights_sha256=sha)

    first = fidelity.compute(SampleStream(generate_batch, 24, 10), reference, weights_path=None, **kw)
    assert set(first) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"}
    assert all(math.isfinite(v) for v in first.values())
    assert calls == [0, 1, 2] and extractions == [24, 40]
    name = fidelity.reference_cache_name("blobs", reference, sha)
    stats = cache / f"{name}-{fidelity.INCEPTION}-stat-fid-2048.pt"
    features = cache / f"{name}-{fidelity.INCEPTION}-features-2048.pt"
    assert stats.is_file() and features.is_file()
    assert not [p for p in cache.iterdir() if not p.name.startswith(name)]  # the generated set is never cached
    mtimes = {p: p.stat().st_mtime_ns for p in cache.iterdir()}

    calls.clear(), extractions.clear()
    second = fidelity.compute(SampleStream(generate_batch, 24, 10), reference, weights_path=path, **kw)
    assert calls == [0, 1, 2] and extractions == [24]  # the reference came from the cache
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes
    assert second == first


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(fidelity.INCEPTION_ENV, raising=False)
    for where in (None, tmp_path / "absent.pth"):
        with pytest.raises(UserError) as e:
            fidelity.inception_weights(where)
        msg = str(e.value)
        assert "\n" not in msg and fidelity.INCEPTION_URL in msg and fidelity.INCEPTION_ENV in msg
    monkeypatch.setenv(fidelity.INCEPTION_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(UserError, match="absent.pth"):
        fidelity.inception_weights()
    x = np.zeros((4, 3, 8, 8), np.uint8)
    with pytest.raises(UserError, match=fidelity.INCEPTION_ENV):
        fidelity.compute(x, x, fidelity.INCEPTION, None, tmp_path / "cache", "ref")


def test_wrong_sha256_is_a_user_error(tmp_path, monkeypatch):
    f = tmp_path / fidelity.INCEPTION_FILE
    f.write_bytes(b"not the weights")
    with pytest.raises(UserError, match="sha256") as e:
        fidelity.inception_weights(f)  # the default check: the official prefix 6726825d
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="sha256"):
        fidelity.inception_weights(f, sha256="0" * 64)
    digest = hashlib.sha256(b"not the weights").hexdigest()
    monkeypatch.setenv(fidelity.INCEPTION_ENV, str(f))
    assert fidelity.inception_weights(sha256=digest) == f


def test_reference_cache_name_follows_content_and_weights():
    ref = blobs(4, seed=0)
    w1, w2 = "a" * 64, "b" * 64
    name = fidelity.reference_cache_name("cifar10-train", ref, w1)
    assert name == fidelity.reference_cache_name("cifar10-train", ref.copy(), w1)
    changed = ref.copy()
    changed[0, 0, 0, 0] ^= 1
    assert fidelity.reference_cache_name("cifar10-train", changed, w1) != name
    assert fidelity.reference_cache_name("cifar10-train", ref, w2) != name
    assert fidelity.reference_cache_name("cifar10-train", ref.reshape(4, 3, 64, 16), w1) != name
    with pytest.raises(UserError, match="reference key"):
        fidelity.reference_cache_name("../escape", ref, w1)


def test_sample_stream_generates_each_batch_once_in_order():
    calls = []

    def generate_batch(b):
        calls.append(b)
        return torch.full((4, 1, 2, 2), b, dtype=torch.uint8)  # always a full batch: the last is cut

    def read():
        loader = DataLoader(SampleStream(generate_batch, 10, 4), batch_size=3, num_workers=0)  # as torch-fidelity
        return torch.cat(list(loader))

    a = read()
    assert a.shape == (10, 1, 2, 2) and a.dtype == torch.uint8
    assert a[:, 0, 0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert calls == [0, 1, 2]
    assert torch.equal(read(), a)
    with pytest.raises(IndexError):
        SampleStream(generate_batch, 10, 4)[10]


def test_sample_stream_converts_model_space_floats():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0]).reshape(1, 1, 1, 5)
    s = SampleStream(lambda b: x, 1, 1)
    assert s[0].dtype == torch.uint8 and s[0].flatten().tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError, match="generate_batch"):
        SampleStream(lambda b: x[:, 0], 1, 1)[0]  # not (B, C, H, W)


def test_grayscale_is_repeated_for_inception_only():
    gray = fidelity.ImageArray(np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4))
    rgb = fidelity.RGB(gray)[0]
    assert rgb.shape == (3, 4, 4) and all(torch.equal(rgb[c], gray[0][0]) for c in range(3))
    colour = fidelity.ImageArray(np.zeros((1, 3, 4, 4), np.uint8))
    assert fidelity.RGB(colour)[0].shape == (3, 4, 4)


def test_kid_subset_size_and_bad_arguments(tmp_path):
    assert fidelity.kid_subset_size(50_000, 50_000) == 1000
    assert fidelity.kid_subset_size(1024, 1500) == 1000
    assert fidelity.kid_subset_size(297, 1500) == 297
    x = np.zeros((4, 1, 8, 8), np.uint8)
    with pytest.raises(UserError, match="metrics"):
        fidelity.compute(x, x, fidelity.INCEPTION, None, tmp_path, "ref", metrics=("ppl",))
    with pytest.raises(UserError, match="extractor"):
        fidelity.compute(x, x, "vgg16", None, tmp_path, "ref")
    with pytest.raises(UserError, match="classifier"):
        fidelity.compute(x, x, "ctcoupling-classifier", tmp_path / "none.pt", tmp_path, "ref")


def test_reference_subset_is_fixed_sorted_and_only_when_smaller():
    """evaluate.fidelity.reference_n (consistency_GC scores against 50,000 training images): the same
    seeded subset for every experiment of a data set; the whole split where n covers it."""
    a, b = fidelity.reference_subset(1000, 100), fidelity.reference_subset(1000, 100)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0) and a.max() < 1000
    assert fidelity.reference_subset(1000, None) is None and fidelity.reference_subset(1000, 1000) is None
    assert not np.array_equal(a, np.arange(100))  # random, not the first n
