"""Image sources in their official formats (imagesets.py), on tiny files written in those exact formats."""
import hashlib
import io
import json
import zipfile

import jsonschema
import numpy as np
import pytest
from PIL import Image

from ctcoupling.data import datasets
from ctcoupling.pipeline import describe
from ctcoupling.data import imagesets
from ctcoupling.config import params as P
from ctcoupling.core.errors import UserError
from official_files import celeba as _celeba
from official_files import edm_zip as _edm_zip
from official_files import imagenet_dir as _imagenet_dir
from official_files import lsun as _lsun
from official_files import photo as _photo

# ---------------------------------------------------------------------------------------------
# Downsampled ImageNet: train_data_batch_1..10.npz + val_data.npz, rows = R, G, B planes, labels 1..1000.


@pytest.mark.parametrize("res", [32, 64])
def test_imagenet_npz_reads_official_batches(tmp_path, res):
    expected = _imagenet_dir(tmp_path / "in", res, labels=lambda f, n: np.array([1, 1000][:n] + [7] * (n - 2))
                             if f == "val_data.npz" else np.full(n, 500))
    spec = {"source": "imagenet_npz", "path": str(tmp_path / "in"), "resolution": res}
    got = datasets.build(spec)
    assert got["x_train"].shape == (10, 3, res, res) and got["x_test"].shape == (8, 3, res, res)
    assert got["x_train"].dtype == np.uint8 and got["y_train"].dtype == np.int64
    for k in expected:
        assert np.array_equal(got[k], expected[k]), k
    # the planes: R = image index (train batches 1..10 in order, then val), G the ramp, B = 255 - index
    assert got["x_train"][:, 0, 5, 7].tolist() == list(range(10))
    assert got["x_test"][:, 2, 0, 0].tolist() == [255 - k for k in range(10, 18)]
    assert got["x_train"][3, 1, 1, 2] == res + 2
    assert got["y_test"][:3].tolist() == [0, 999, 6] and set(got["y_train"].tolist()) == {499}
    again = datasets.build(spec)
    assert all(np.array_equal(again[k], got[k]) for k in got)
    assert datasets.source_files(spec) == [tmp_path / "in" / f for f in imagesets.IMAGENET_FILES]
    assert describe.data_shape({"datasets": {"d": spec}}, "d") == (3, res, res)


@pytest.mark.parametrize("bad", [0, 1001])
def test_imagenet_npz_label_outside_1_to_1000_names_the_file(tmp_path, bad):
    _imagenet_dir(tmp_path, 32, labels=lambda f, n: np.array([3, bad] if f == "train_data_batch_4.npz" else [3] * n))
    with pytest.raises(UserError, match=rf"train_data_batch_4.npz: label {bad} at index 1 is outside 1..1000 "
                                        "\\(the official files number the classes from 1\\)"):
        imagesets.imagenet_npz(tmp_path, 32)


def test_imagenet_npz_errors(tmp_path):
    expected = _imagenet_dir(tmp_path, 64)
    with pytest.raises(UserError, match="'data' is uint8 of shape \\(1, 12288\\), expected uint8 \\(1, 3072\\) .* "
                                        "are these the Imagenet32 files"):
        imagesets.imagenet_npz(tmp_path, 32)
    with pytest.raises(UserError, match="resolution 32 or 64, not 48"):
        imagesets.imagenet_npz(tmp_path, 48)
    sha = hashlib.sha256((tmp_path / "val_data.npz").read_bytes()).hexdigest()
    got = imagesets.imagenet_npz(tmp_path, 64, {"val_data.npz": sha})
    assert np.array_equal(got["x_test"], expected["x_test"])
    with pytest.raises(UserError, match="train_data_batch_2.npz: sha256 [0-9a-f]{64} does not match the expected 0000"):
        imagesets.imagenet_npz(tmp_path, 64, {"val_data.npz": sha, "train_data_batch_2.npz": "0" * 64})
    with pytest.raises(UserError, match="sha256 names 'val.npz', not one of the official files"):
        imagesets.imagenet_npz(tmp_path, 64, {"val.npz": sha})
    np.savez(tmp_path / "train_data_batch_7.npz", data=np.zeros((1, 3 * 64 * 64), np.uint8),
             labels=np.array([1], dtype=object))
    with pytest.raises(UserError, match="train_data_batch_7.npz: 'labels' is stored as pickled Python objects"):
        imagesets.imagenet_npz(tmp_path, 64)
    np.savez(tmp_path / "train_data_batch_7.npz", labels=np.array([1]))
    with pytest.raises(UserError, match="train_data_batch_7.npz: lacks 'data'; not an official Downsampled"):
        imagesets.imagenet_npz(tmp_path, 64)
    blob = (tmp_path / "val_data.npz").read_bytes()
    (tmp_path / "train_data_batch_7.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="train_data_batch_7.npz: truncated or corrupt .npz"):
        imagesets.imagenet_npz(tmp_path, 64)
    (tmp_path / "train_data_batch_10.npz").unlink()
    with pytest.raises(UserError, match="train_data_batch_10.npz: Downsampled ImageNet file not found; get "
                                        "Imagenet64_train_part1_npz.zip and Imagenet64_train_part2_npz.zip and "
                                        "Imagenet64_val_npz.zip from image-net.org"):
        imagesets.imagenet_npz(tmp_path, 64)


# ---------------------------------------------------------------------------------------------
# The GC resize + center crop: bitwise torchvision's Resize(res, LANCZOS) + CenterCrop(res).


def _torchvision_gc(res):
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(res, interpolation=transforms.InterpolationMode.LANCZOS),
                               transforms.CenterCrop(res)])


@pytest.mark.parametrize("w,h", [(178, 218), (218, 178), (256, 341), (341, 256), (64, 64), (40, 50), (65, 67),
                                 (300, 65), (129, 127), (97, 100)])
@pytest.mark.parametrize("res", [64, 32])
def test_resize_center_crop_is_torchvision_bitwise(w, h, res):
    img = _photo(w, h, w * h)
    ours = imagesets.resize_center_crop(img, res)
    theirs = _torchvision_gc(res)(img)
    assert ours.size == (res, res)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_resize_center_crop_offsets_round_half_to_even():
    # 64x65 at 64: no resampling, and the top offset is round(0.5) = 0 (Python's round), not 1
    a = (np.arange(65 * 64) % 256).astype(np.uint8).reshape(65, 64)
    got = np.asarray(imagesets.resize_center_crop(Image.fromarray(a), 64))
    assert np.array_equal(got, a[:64])


# ---------------------------------------------------------------------------------------------
# CelebA: img_align_celeba.zip of 178x218 JPEGs + list_eval_partition.txt.


def _celeba_spec(tmp_path, **kw):
    return {"source": "celeba", "path": str(tmp_path / "img_align_celeba.zip"),
            "partition": str(tmp_path / "list_eval_partition.txt"), "resolution": 64, "check_md5": False, **kw}


def test_celeba_reads_the_official_zip_like_torchvision(tmp_path):
    names, parts, blobs = _celeba(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    spec = _celeba_spec(tmp_path)
    got = datasets.build(spec)
    assert set(got) == {"x_train", "x_test"}  # unlabelled
    assert got["x_train"].shape == (8, 3, 64, 64) and got["x_test"].shape == (8, 3, 64, 64)
    assert got["x_train"].dtype == np.uint8
    tv = _torchvision_gc(64)
    for split, code in (("train", 0), ("test", 2)):  # partition-file order, valid (1) left out
        ref = [np.asarray(tv(Image.open(io.BytesIO(blobs[n])))).transpose(2, 0, 1) for n, p in zip(names, parts)
               if p == code]
        assert np.array_equal(got[f"x_{split}"], np.stack(ref)), split
    again = datasets.build(spec)
    assert all(np.array_equal(again[k], got[k]) for k in got)
    assert sorted(tmp_path.rglob("*")) == before  # read in place: nothing extracted
    assert datasets.source_files(spec) == [tmp_path / "img_align_celeba.zip", tmp_path / "list_eval_partition.txt"]
    assert describe.data_shape({"datasets": {"c": spec}}, "c") == (3, 64, 64)


def test_celeba_md5s_are_torchvisions_and_checked_by_default(tmp_path):
    from torchvision.datasets import CelebA

    official = {name: md5 for _, md5, name in CelebA.file_list}
    assert all(official[k] == v for k, v in imagesets.CELEBA_MD5.items())
    _celeba(tmp_path)
    spec = _celeba_spec(tmp_path)
    del spec["check_md5"]
    with pytest.raises(UserError, match="img_align_celeba.zip: md5 [0-9a-f]{32} does not match the expected "
                                        "00d2c5bc6d35e252742224ab0c1e8fcb; the file is damaged or not the official"):
        datasets.build(spec)


def test_celeba_errors(tmp_path):
    _celeba(tmp_path, corrupt="000003.jpg")
    part = tmp_path / "list_eval_partition.txt"
    with pytest.raises(UserError, match="img_align_celeba.zip:img_align_celeba/000003.jpg: corrupt or unreadable "
                                        "image"):
        datasets.build(_celeba_spec(tmp_path))
    part.write_text(part.read_text() + "999999.jpg 0\n")
    with pytest.raises(UserError, match="archive lacks img_align_celeba/999999.jpg \\(1 image\\(s\\) of "
                                        "list_eval_partition.txt missing\\)"):
        datasets.build(_celeba_spec(tmp_path))
    part.write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(UserError, match="list_eval_partition.txt:2: expected '<image>.jpg <0\\|1\\|2>', got "
                                        "'000002.jpg 3'"):
        datasets.build(_celeba_spec(tmp_path))
    part.write_text("../000001.jpg 0\n")
    with pytest.raises(UserError, match="list_eval_partition.txt:1: expected"):
        datasets.build(_celeba_spec(tmp_path))
    blob = (tmp_path / "img_align_celeba.zip").read_bytes()
    (tmp_path / "img_align_celeba.zip").write_bytes(blob[: len(blob) // 3])
    part.write_text("000001.jpg 0\n")
    with pytest.raises(UserError, match="img_align_celeba.zip: truncated or corrupt zip archive"):
        datasets.build(_celeba_spec(tmp_path))
    part.unlink()
    with pytest.raises(UserError, match="list_eval_partition.txt: CelebA partition file not found; get "
                                        "list_eval_partition.txt \\(the 'Eval' folder of the CelebA page"):
        datasets.build(_celeba_spec(tmp_path))
    with pytest.raises(UserError, match="nope.zip: CelebA archive not found; get img_align_celeba.zip"):
        datasets.build(_celeba_spec(tmp_path, path=str(tmp_path / "nope.zip")))


@pytest.mark.parametrize("member", ["../evil.jpg", "/abs/evil.jpg", "img_align_celeba/../../evil.jpg", "C:/evil.jpg"])
def test_zip_members_outside_the_archive_are_refused(tmp_path, member):
    _celeba(tmp_path, extra={member: b"x"})
    with pytest.raises(UserError, match=f"refusing archive member '{member}': absolute path or '..'"):
        datasets.build(_celeba_spec(tmp_path))
    assert not (tmp_path.parent / "evil.jpg").exists() and not (tmp_path / "evil.jpg").exists()


# ---------------------------------------------------------------------------------------------
# LSUN: an LMDB whose values are webp images.


def _flat(k):
    return Image.fromarray(np.full((64, 64, 3), (k * 20, 255 - k * 20, k), np.uint8))


def test_lsun_reads_webp_lmdb_in_key_order_and_splits_by_seed(tmp_path):
    keys = [f"{k:040x}".encode() for k in range(12)]
    _lsun(tmp_path / "church_outdoor_train_lmdb", {key: _flat(k) for k, key in enumerate(keys)})
    spec = {"source": "lsun", "path": str(tmp_path / "church_outdoor_train_lmdb"), "resolution": 64,
            "n_test": 4, "seed": 3}
    got = datasets.build(spec)
    assert got["x_train"].shape == (8, 3, 64, 64) and got["x_test"].shape == (4, 3, 64, 64)
    assert set(got) == {"x_train", "x_test"} and got["x_train"].dtype == np.uint8
    tr, te = datasets.split(12, 4, np.random.default_rng(3))
    every = np.stack([np.asarray(_flat(k)).transpose(2, 0, 1) for k in range(12)])  # lossless: exact pixels
    assert np.array_equal(got["x_train"], every[tr]) and np.array_equal(got["x_test"], every[te])
    again = datasets.build(spec)
    assert all(np.array_equal(again[k], got[k]) for k in got)
    other = datasets.build({**spec, "seed": 4})
    assert not np.array_equal(other["x_test"], got["x_test"])
    assert datasets.source_files(spec) == [tmp_path / "church_outdoor_train_lmdb" / "data.mdb"]
    assert describe.data_shape({"datasets": {"l": spec}}, "l") == (3, 64, 64)


def test_lsun_resizes_lossy_webp_like_torchvision(tmp_path):
    sizes = [(341, 256), (256, 256), (256, 384), (256, 300)]  # LSUN's shorter side is 256
    keys = [f"{k:04d}".encode() for k in range(len(sizes))]
    blobs = _lsun(tmp_path, {key: _photo(w, h, k) for k, (key, (w, h)) in enumerate(zip(keys, sizes))}, lossless=False)
    got = imagesets.lsun(tmp_path, 64, 1, 0)
    order = np.argsort(np.concatenate(datasets.split(4, 1, np.random.default_rng(0))))
    every = np.concatenate([got["x_train"], got["x_test"]])[order]
    tv = _torchvision_gc(64)
    for k, key in enumerate(keys):
        img = Image.open(io.BytesIO(blobs[key]))
        assert img.format == "WEBP"
        assert np.array_equal(every[k], np.asarray(tv(img.convert("RGB"))).transpose(2, 0, 1)), k


def test_lsun_errors(tmp_path):
    keys = [f"{k:04d}".encode() for k in range(3)]
    _lsun(tmp_path / "a", {key: _flat(k) for k, key in enumerate(keys)}, raw={b"0001": b"RIFF\x00garbage"})
    with pytest.raises(UserError, match="a: key 0001: corrupt or unreadable image"):
        imagesets.lsun(tmp_path / "a", 64, 1, 0)
    _lsun(tmp_path / "b", {key: _flat(k) for k, key in enumerate(keys)})
    with pytest.raises(UserError, match="b: n_test 3 leaves no training images \\(it holds 3\\)"):
        imagesets.lsun(tmp_path / "b", 64, 3, 0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "data.mdb").write_bytes(b"\x00" * 20000)
    with pytest.raises(UserError, match="c: not a readable LMDB .*unzip the official \\*_lmdb.zip again"):
        imagesets.lsun(tmp_path / "c", 64, 1, 0)
    with pytest.raises(UserError, match="d: LSUN lmdb not found \\(no data.mdb there\\); get the category's "
                                        "\\*_lmdb.zip"):
        imagesets.lsun(tmp_path / "d", 64, 1, 0)


# ---------------------------------------------------------------------------------------------
# NVlabs/edm dataset_tool.py zips: PNGs in 00000/img00000000.png folders, dataset.json labels.


def test_edm_zip_reads_sorted_pngs_with_labels(tmp_path):
    _edm_zip(tmp_path / "imagenet-32x32.zip")
    sha = hashlib.sha256((tmp_path / "imagenet-32x32.zip").read_bytes()).hexdigest()
    spec = {"source": "edm_zip", "path": str(tmp_path / "imagenet-32x32.zip"), "resolution": 32, "n_test": 3,
            "seed": 0, "sha256": sha}
    got = datasets.build(spec)
    assert got["x_train"].shape == (7, 3, 32, 32) and got["x_test"].shape == (3, 3, 32, 32)
    assert got["y_train"].dtype == np.int64
    tr, te = datasets.split(10, 3, np.random.default_rng(0))
    assert got["x_train"][:, 0, 1, 1].tolist() == [i * 10 for i in tr]  # image i is the i-th in name order
    assert got["x_test"][:, 1, 5, 5].tolist() == [200 - i * 10 for i in te]
    assert got["x_train"][:, :, 0, 0].tolist() == [[255, 255, 255]] * 7
    assert got["y_train"].tolist() == [i % 3 for i in tr] and got["y_test"].tolist() == [i % 3 for i in te]
    again = datasets.build(spec)
    assert all(np.array_equal(again[k], got[k]) for k in got)
    assert datasets.source_files(spec) == [tmp_path / "imagenet-32x32.zip"]
    assert describe.data_shape({"datasets": {"e": spec}}, "e") == (3, 32, 32)
    with pytest.raises(UserError, match="imagenet-32x32.zip: sha256 [0-9a-f]{64} does not match the expected 0000"):
        datasets.build({**spec, "sha256": "0" * 64})


@pytest.mark.parametrize("labels", [None, lambda names: None])
def test_edm_zip_unlabelled(tmp_path, labels):
    _edm_zip(tmp_path / "d.zip", labels=labels)
    got = imagesets.edm_zip(tmp_path / "d.zip", 32, 2, 0)
    assert set(got) == {"x_train", "x_test"} and len(got["x_train"]) == 8


def test_edm_zip_grayscale(tmp_path):
    _edm_zip(tmp_path / "g.zip", mode="L", labels=None)
    spec = {"source": "edm_zip", "path": str(tmp_path / "g.zip"), "resolution": 32, "channels": 1, "n_test": 2,
            "seed": 0}
    got = datasets.build(spec)
    assert got["x_train"].shape == (8, 1, 32, 32)
    assert describe.data_shape({"datasets": {"g": spec}}, "g") == (1, 32, 32)
    with pytest.raises(UserError, match="g.zip:00000/img00000000.png: image is 32x32 with 1 channel\\(s\\); params "
                                        "say 32x32 with 3"):
        datasets.build({**spec, "channels": 3})


@pytest.mark.parametrize("labels,match", [
    (lambda names: [[n, 0] for n in names[1:]], "dataset.json: no label for '00000/img00000000.png' \\(1 image"),
    (lambda names: [[n, -1] for n in names], "label -1 of '00000/img00000000.png' is not a class index"),
    (lambda names: [[n, "cat"] for n in names], "label 'cat' of .* is not a class index"),
    (lambda names: [[n, [0.5, 0.5]] for n in names], "label \\[0.5, 0.5\\] of .* is not a class index"),
    (lambda names: {"a": 1}, "dataset.json: expected \\{\"labels\": \\[\\[relative_path, label\\], ...\\] or null\\}"),
])
def test_edm_zip_bad_labels(tmp_path, labels, match):
    _edm_zip(tmp_path / "d.zip", labels=labels)
    with pytest.raises(UserError, match=match):
        imagesets.edm_zip(tmp_path / "d.zip", 32, 2, 0)


def test_edm_zip_errors(tmp_path):
    _edm_zip(tmp_path / "s.zip", size=64)
    with pytest.raises(UserError, match="s.zip:00000/img00000000.png: image is 64x64 with 3 channel\\(s\\); params say "
                                        "32x32 with 3; make the zip with dataset_tool.py --resolution=32x32"):
        imagesets.edm_zip(tmp_path / "s.zip", 32, 2, 0)
    _edm_zip(tmp_path / "a.zip", mode="RGBA")
    with pytest.raises(UserError, match="a.zip:00000/img00000000.png: image mode RGBA"):
        imagesets.edm_zip(tmp_path / "a.zip", 32, 2, 0)
    _edm_zip(tmp_path / "c.zip", labels=None, extra={"00009/img00000099.png": b"\x89PNG\r\n\x1a\nbroken"})
    with pytest.raises(UserError, match="c.zip:00009/img00000099.png: corrupt or unreadable image"):
        imagesets.edm_zip(tmp_path / "c.zip", 32, 2, 0)
    _edm_zip(tmp_path / "u.zip", extra={"../x.png": b"x"})
    with pytest.raises(UserError, match="u.zip: refusing archive member '../x.png'"):
        imagesets.edm_zip(tmp_path / "u.zip", 32, 2, 0)
    with zipfile.ZipFile(tmp_path / "e.zip", "w") as z:
        z.writestr("dataset.json", "{}")
    with pytest.raises(UserError, match="e.zip: no images in the zip"):
        imagesets.edm_zip(tmp_path / "e.zip", 32, 2, 0)
    with pytest.raises(UserError, match="n.zip: dataset zip not found; make it with NVlabs/edm's dataset_tool.py"):
        imagesets.edm_zip(tmp_path / "n.zip", 32, 2, 0)


def test_corrupt_zip_member_is_named(tmp_path):
    _edm_zip(tmp_path / "z.zip", n=2, labels=None)
    blob = bytearray((tmp_path / "z.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / "z.zip") as z:
        info = z.getinfo("00000/img00000001.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start + 40] ^= 0xFF  # a flipped byte inside the stored PNG: the CRC check fails
    (tmp_path / "z.zip").write_bytes(bytes(blob))
    with pytest.raises(UserError, match="z.zip:00000/img00000001.png: corrupt archive member"):
        imagesets.edm_zip(tmp_path / "z.zip", 32, 1, 0)


# ---------------------------------------------------------------------------------------------
# The params schema admits exactly these specs.

VALID = [
    {"source": "imagenet_npz", "path": "d", "resolution": 64, "sha256": {"val_data.npz": "a" * 64}},
    {"source": "celeba", "path": "img_align_celeba.zip", "partition": "list_eval_partition.txt", "resolution": 64,
     "check_md5": True},
    {"source": "lsun", "path": "church_outdoor_train_lmdb", "resolution": 64, "n_test": 10000, "seed": 0},
    {"source": "edm_zip", "path": "imagenet-64x64.zip", "resolution": 64, "n_test": 10000, "seed": 0,
     "channels": 3, "sha256": "b" * 64},
]
INVALID = [
    {"source": "imagenet_npz", "path": "d", "resolution": 48},
    {"source": "imagenet_npz", "path": "d", "resolution": 32, "sha256": {"val.npz": "a" * 64}},
    {"source": "imagenet_npz", "path": "d", "resolution": 32, "n_test": 5},
    {"source": "celeba", "path": "img_align_celeba.zip", "resolution": 64},
    {"source": "lsun", "path": "l", "resolution": 64, "n_test": 10},
    {"source": "edm_zip", "path": "z.zip", "resolution": 64, "n_test": 1, "seed": 0, "channels": 4},
]


def _dataset_validator():
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/dataset", "$defs": P.schema()["$defs"]})


@pytest.mark.parametrize("spec", VALID)
def test_schema_admits_the_new_sources(spec):
    assert list(_dataset_validator().iter_errors(spec)) == []


@pytest.mark.parametrize("spec", INVALID)
def test_schema_rejects_bad_specs(spec):
    assert list(_dataset_validator().iter_errors(spec)) != []


def test_prepare_writes_the_set_and_hashes_the_official_file(tmp_path):
    import yaml

    from conftest import ROOT, ctc

    _edm_zip(tmp_path / "imagenet-32x32.zip")
    p = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    p["datasets"]["imagenet32"] = {"source": "edm_zip", "path": str(tmp_path / "imagenet-32x32.zip"),
                                   "resolution": 32, "n_test": 3, "seed": 0}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(p))
    ctc("prepare", "--params", tmp_path / "p.yaml", "--dataset", "imagenet32", cwd=tmp_path)
    got = datasets.load_prepared(tmp_path / "data/imagenet32.npz")
    assert got["x_train"].shape == (7, 3, 32, 32) and got["y_test"].dtype == np.int64
    m = json.loads((tmp_path / "data/imagenet32.json").read_text())
    assert m["splits"] == {"train": 7, "test": 3}
    assert str(tmp_path / "imagenet-32x32.zip") in m["provenance"]["inputs"]
    (tmp_path / "imagenet-32x32.zip").unlink()
    bad = ctc("prepare", "--params", tmp_path / "p.yaml", "--dataset", "imagenet32", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'imagenet-32x32.zip'}: dataset zip not found; "
                                               "make it with NVlabs/edm's dataset_tool.py (e.g. "
                                               "--dest=imagenet-32x32.zip --resolution=32x32 "
                                               "--transform=center-crop) and set `path` to it"]


def test_fill_routes_images_into_split_arrays_and_checks_the_count():
    images = [np.full((1, 2, 2), k, np.uint8) for k in range(5)]
    tr, te = np.array([0, 2, 3]), np.array([1, 4])
    x_train, x_test = imagesets.fill(iter(images), [tr, te], (1, 2, 2), "t")
    assert x_train[:, 0, 0, 0].tolist() == [0, 2, 3] and x_test[:, 0, 0, 0].tolist() == [1, 4]
    with pytest.raises(UserError, match="t: 4 images read but 5 expected"):
        imagesets.fill(iter(images[:4]), [tr, te], (1, 2, 2), "t")
    with pytest.raises(UserError, match="t: 6 images read but 5 expected"):
        imagesets.fill(iter(images + images[:1]), [tr, te], (1, 2, 2), "t")
