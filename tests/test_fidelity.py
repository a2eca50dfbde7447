"""The torch-fidelity front end: weights resolution and checks, content-keyed reference cache,
streaming of generated samples, and the whole Inception path on random weights (offline)."""
import hashlib
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import yaml
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
import torch_fidelity.utils as tf_utils
from torch.utils.data import DataLoader

from conftest import ROOT, ctc
from ctcoupling.results import audit
from ctcoupling.measure import fidelity
from ctcoupling.core.errors import UserError
from ctcoupling.measure.fidelity import SampleStream


def _no_download(*args, **kwargs):
    raise AssertionError("torch-fidelity tried to download weights or code")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Any attempt to fetch the Inception weights, or DINOv2's code and weights through torch.hub, fails the test."""
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "load", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)


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


@pytest.mark.full  # CPU Inception at 299x299: 88 images, 10-20 s on 2 idle cores
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


def says_where_to_get_them(resolve, url: str, env: str, param: str, monkeypatch, tmp_path):
    """`resolve` (a weights resolver), with `env` unset, on nothing and on a missing file: one UserError
    line naming the file, where it comes from and where to name it."""
    monkeypatch.delenv(env, raising=False)
    for where in (None, tmp_path / "absent.pth"):
        with pytest.raises(UserError) as e:
            resolve(where)
        msg = str(e.value)
        assert "\n" not in msg and url in msg and env in msg and param in msg
        assert where is None or str(where) in msg


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    says_where_to_get_them(fidelity.inception_weights, fidelity.INCEPTION_URL, fidelity.INCEPTION_ENV,
                           fidelity.INCEPTION_PARAM, monkeypatch, tmp_path)
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


# --- FD_DINOv2 ------------------------------------------------------------------------------------

VITL14 = {"dim": 1024, "depth": 24, "patch": 14, "grid": 37}
VITL14_PARAMETERS = 304_368_640  # facebookresearch/dinov2 hub dinov2_vitl14(pretrained=False): 343 tensors
SMALL = {"dim": 64, "depth": 2, "patch": 14, "grid": 37}  # for speed: 4 heads of 16 (DINOV2_HEAD_DIM patched)


def dinov2_layout(dim: int, depth: int, patch: int, grid: int) -> dict[str, tuple]:
    """Names and shapes of the official DINOv2 ViT state dict (dinov2_vitl14_pretrain.pth at VITL14),
    spelled out from the official model's construction, not from ctcoupling's module."""
    layout = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + grid * grid, dim), "mask_token": (1, dim),
              "patch_embed.proj.weight": (dim, 3, patch, patch), "patch_embed.proj.bias": (dim,),
              "norm.weight": (dim,), "norm.bias": (dim,)}
    for i in range(depth):
        b = f"blocks.{i}."
        layout |= {b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "norm2.weight": (dim,),
                   b + "norm2.bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,),
                   b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,), b + "ls1.gamma": (dim,),
                   b + "ls2.gamma": (dim,), b + "mlp.fc1.weight": (4 * dim, dim), b + "mlp.fc1.bias": (4 * dim,),
                   b + "mlp.fc2.weight": (dim, 4 * dim), b + "mlp.fc2.bias": (dim,)}
    return layout


def random_dinov2(path, arch: dict, monkeypatch, head_dim: int = 64):
    """A weights file of random values in the official layout for `arch`, which the suite is made to
    expect (fidelity.DINOV2_ARCH); returns the file's path."""
    monkeypatch.setattr(fidelity, "DINOV2_ARCH", arch)
    monkeypatch.setattr(fidelity, "DINOV2_HEAD_DIM", head_dim)
    g = torch.Generator().manual_seed(0)
    torch.save({k: torch.randn(shape, generator=g) * 0.2 for k, shape in dinov2_layout(**arch).items()}, path)
    return path


def test_dinov2_full_size_is_the_official_vit_l14_layout():
    """The network the suite builds for a real file: ViT-L/14 with the official names, shapes and
    parameter count, 1024 features per image (on the meta device: no memory, no weights)."""
    assert fidelity.DINOV2_ARCH == VITL14
    with torch.device("meta"):
        net = fidelity.DinoV2(**fidelity.DINOV2_ARCH)
        features = net(torch.empty(2, 3, fidelity.DINOV2_SIZE, fidelity.DINOV2_SIZE))
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == dinov2_layout(**VITL14)
    assert sum(p.numel() for p in net.parameters()) == VITL14_PARAMETERS == \
        sum(math.prod(s) for s in dinov2_layout(**VITL14).values())
    assert features.shape == (2, 1024)


def test_dinov2_extractor_reads_a_local_file_and_gives_1024_features(tmp_path, monkeypatch):
    """ViT-L/14's width (1024 features) at depth 1, random weights, through each resize mode's
    torch-fidelity extractor, on 2 tiny images; nothing is downloaded (the `offline` fixture)."""
    path = random_dinov2(tmp_path / "w.pth", VITL14 | {"depth": 1}, monkeypatch)
    images = torch.from_numpy(blobs(2, seed=0, size=16))
    out = {}
    for name, mode in fidelity.DINOV2_EXTRACTORS.items():
        extractor = fidelity.DinoV2Features(name, ["dinov2"], feature_extractor_weights_path=str(path))
        (out[mode],) = extractor(images)
        assert out[mode].shape == (2, 1024) and out[mode].dtype == torch.float32
        assert torch.isfinite(out[mode]).all()
    assert not torch.allclose(out["pil"], out["torch-fidelity"])  # the resize matters
    assert fidelity.dinov2_extractor() == "ctcoupling-dinov2-vit-l-14-pil" == audit.FD_DINOV2_EXTRACTOR


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets, with scipy's sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize("mode", ["pil", "torch"])
def test_fd_dinov2_equals_an_independent_frechet_distance(tmp_path, monkeypatch, mode):
    """fidelity.compute on the DINOv2 extractor (torch-fidelity's FID code path, cache included) against
    the Fréchet distance computed here from the same extractor's features; 1-channel images become RGB."""
    path = random_dinov2(tmp_path / "w.pth", SMALL, monkeypatch, head_dim=16)
    generated, reference = blobs(80, seed=2, channels=1), blobs(100, seed=1)
    name = fidelity.dinov2_extractor(mode)
    extractor = fidelity.DinoV2Features(name, ["dinov2"], feature_extractor_weights_path=str(path))
    with torch.no_grad():
        feats = [extractor(torch.from_numpy(x).expand(-1, 3, -1, -1))[0].double().numpy()
                 for x in (generated, reference)]
    expected = frechet(*feats)
    got = fidelity.compute(generated, reference, name, path, tmp_path / "cache", "blobs", ("fid",), batch=32)
    assert got["fid"] == pytest.approx(expected, rel=1e-5) and expected > 0
    cached = fidelity.reference_cache_name("blobs", reference, fidelity.sha256_file(path))
    assert (tmp_path / "cache" / f"{cached}-{name}-stat-fid-dinov2.pt").is_file()


def test_missing_dinov2_weights_say_where_to_get_them(tmp_path, monkeypatch):
    says_where_to_get_them(fidelity.dinov2_weights, fidelity.DINOV2_URL, fidelity.DINOV2_ENV, fidelity.DINOV2_PARAM,
                           monkeypatch, tmp_path)
    monkeypatch.setenv(fidelity.DINOV2_ENV, str(tmp_path / "absent.pth"))
    x = np.zeros((4, 3, 8, 8), np.uint8)
    with pytest.raises(UserError, match="absent.pth"):
        fidelity.compute(x, x, fidelity.dinov2_extractor(), None, tmp_path / "cache", "ref", ("fid",))
    spec = {"features": "inception", "metrics": ["fid", "fd_dinov2"], "reference": "train", "stream": False,
            "n": None, "seeds": [0], "steps": [1], "batch": 4, "inception_weights": None, "inception_sha256": None}
    with pytest.raises(UserError, match="absent.pth"):  # asked for, so an error, not an unavailable record
        fidelity.evaluate(spec, x, "ref", samples=x, sample_nfe=1, cache=tmp_path / "cache")


class _Executes:
    def __reduce__(self):
        return (exec, ("raise SystemExit('the weights file ran its code')",))


def test_wrong_dinov2_files_are_one_line_errors_and_never_run_code(tmp_path, monkeypatch):
    good = random_dinov2(tmp_path / "good.pth", SMALL, monkeypatch, head_dim=16)
    state = torch.load(good, weights_only=True)
    cases = {"bytes.pth": (b"not a weights file", "unreadable DINOv2 weights"),
             "code.pth": ({"cls_token": _Executes()}, "unreadable DINOv2 weights"),  # refused by weights_only
             "keys.pth": ({k: v for k, v in state.items() if k != "norm.bias"}, "not the DINOv2 ViT-L/14 state dict"),
             "shape.pth": (state | {"cls_token": torch.zeros(1, 1, 8)}, "not the DINOv2 ViT-L/14 state dict"),
             "list.pth": ([1, 2], "not the DINOv2 ViT-L/14 state dict")}
    for file, (content, message) in cases.items():
        path = tmp_path / file
        path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
        with pytest.raises(UserError, match=message) as e:
            fidelity.load_dinov2(path)
        assert "\n" not in str(e.value) and file in str(e.value)
    with pytest.raises(UserError, match="sha256"):
        fidelity.dinov2_weights(good, sha256="0" * 64)
    assert fidelity.dinov2_weights(good, sha256=fidelity.sha256_file(good)) == good


def test_cli_missing_dinov2_weights_is_one_line_with_status_2(tmp_path):
    """`ctcoupling evaluate` of an image experiment with fd_dinov2 stops before any work."""
    params = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    params["evaluate"]["fidelity"] |= {"metrics": ["fid", "fd_dinov2"], "dinov2_weights": str(tmp_path / "absent.pth")}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = ctc("evaluate", "--params", tmp_path / "p.yaml", "--experiment", "digits-ict-vc-s0", cwd=tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'absent.pth'}: DINOv2 ViT-L/14 weights file "
                                                   "not found") and fidelity.DINOV2_URL in lines[0]


def test_evaluate_records_fd_dinov2_per_seed(tmp_path, monkeypatch):
    """metrics [fd_dinov2] alone: no Inception weights needed; every seed's stream is scored, the
    summary has mean and std, the record names extractor, resize and weights."""
    path = random_dinov2(tmp_path / "w.pth", SMALL, monkeypatch, head_dim=16)
    reference = blobs(70, seed=1)
    spec = {"features": "inception", "metrics": ["fd_dinov2"], "reference": "train", "stream": True, "n": 20,
            "seeds": [0, 1], "steps": [1], "batch": 10, "inception_weights": None, "inception_sha256": None,
            "dinov2_weights": str(path), "dinov2_resize": "torch"}
    made = []

    def make_stream(nfe, seed):
        made.append((nfe, seed))
        images = blobs(20, seed=10 + seed)
        return SampleStream(lambda b: torch.from_numpy(images[b * 10:(b + 1) * 10]), 20, 10)

    record = fidelity.evaluate(spec, reference, "blobs", make_stream=make_stream, cache=tmp_path / "cache")
    assert record["available"] and made == [(1, 0), (1, 1)]
    assert record["fd_dinov2"] == {"extractor": "ctcoupling-dinov2-vit-l-14-torch", "resize": "torch",
                                   "weights_sha256": fidelity.sha256_file(path), "how": fidelity.DINOV2_RESIZES["torch"]}
    assert [set(r) for r in record["runs"]] == [{"nfe", "seed", "n_generated", "fd_dinov2"}] * 2
    summary = record["summary"]["1"]["fd_dinov2"]
    assert summary["n"] == 2 and summary["std"] > 0 and math.isfinite(summary["mean"])
    assert "fd_dinov2 on ctcoupling-dinov2-vit-l-14-torch" in record["protocol"]
