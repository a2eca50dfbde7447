import io
import pickle
import tarfile

import numpy as np
import pytest

from cifar_fixture import batch_pickle, write_archive
from conftest import ctc
from ctcoupling.core import artifacts
from ctcoupling.data import datasets
from ctcoupling.core.errors import UserError


@pytest.mark.parametrize("source", datasets.TOY_SOURCES)
def test_toy_sets_are_seeded_and_in_range(source):
    a = datasets.toy_2d(source, 500, np.random.default_rng(3))
    b = datasets.toy_2d(source, 500, np.random.default_rng(3))
    assert a.shape == (500, 2) and a.dtype == np.float32 and np.array_equal(a, b)
    assert np.abs(a).max() < 1.5


def test_two_gaussians_modes_are_vct_fig1():
    x = datasets.toy_2d("two_gaussians", 4000, np.random.default_rng(0), std=0.05)
    upper = x[x[:, 1] > 0]
    lower = x[x[:, 1] < 0]
    np.testing.assert_allclose(upper.mean(0), [0.0, 0.5], atol=0.01)
    np.testing.assert_allclose(lower.mean(0), [0.0, -0.5], atol=0.01)
    assert 0.45 < len(upper) / len(x) < 0.55


def test_checkerboard_occupies_even_cells():
    x = datasets.toy_2d("checkerboard", 2000, np.random.default_rng(0))
    cells = np.floor((x + 1) / 0.5).astype(int)
    assert ((cells.sum(1) % 2) == 0).all()


def test_digits_are_uint8_real_data_split_without_overlap():
    arrays = datasets.build({"source": "digits", "n_test": 297, "seed": 0})
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape[1:] == (1, 8, 8)
    assert len(arrays["x_train"]) + len(arrays["x_test"]) == 1797 and len(arrays["x_test"]) == 297
    assert arrays["x_train"].max() == 255 and arrays["x_train"].min() == 0
    x = datasets.to_model_space(arrays["x_train"])
    assert x.min() == -1.0 and x.max() == 1.0
    train = {r.tobytes() for r in arrays["x_train"]}
    assert sum(r.tobytes() in train for r in arrays["x_test"]) < 5  # only exact duplicate digits may repeat


def test_uint8_conversion_is_methods_8():
    x = np.array([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0], dtype=np.float32)
    assert datasets.to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]


def test_cifar10_reads_the_official_format(tmp_path):
    md5, expected = write_archive(tmp_path / "cifar-10-python.tar.gz")
    got = datasets.cifar10(tmp_path / "cifar-10-python.tar.gz", md5=md5)
    for k, v in expected.items():
        assert np.array_equal(got[k], v), k
    assert got["x_train"].shape == (20, 3, 32, 32) and got["x_test"].dtype == np.uint8


def test_cifar10_wrong_md5(tmp_path):
    write_archive(tmp_path / "c.tar.gz")
    with pytest.raises(UserError, match=r"c.tar.gz: md5 [0-9a-f]{32} does not match the expected c58f3010"):
        datasets.cifar10(tmp_path / "c.tar.gz")


def test_cifar10_truncated(tmp_path):
    write_archive(tmp_path / "c.tar.gz")
    blob = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "t.tar.gz").write_bytes(blob[: len(blob) // 2])
    md5 = datasets.md5_file(tmp_path / "t.tar.gz")  # the md5 matches, so the truncation itself must be caught
    with pytest.raises(UserError, match="t.tar.gz: truncated or corrupt archive"):
        datasets.cifar10(tmp_path / "t.tar.gz", md5=md5)


def test_cifar10_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(UserError, match="CIFAR-10 archive not found; get cifar-10-python.tar.gz from https://"):
        datasets.cifar10(tmp_path / "nope.tar.gz")


@pytest.mark.parametrize("member", ["../evil", "/abs/evil", "cifar-10-batches-py/../../evil"])
def test_extraction_rejects_members_outside_target(tmp_path, member):
    md5, _ = write_archive(tmp_path / "c.tar.gz", extra_members={member: b"x"})
    with pytest.raises(UserError, match="refusing archive member .*escapes the target"):
        datasets.cifar10(tmp_path / "c.tar.gz", md5=md5)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_extraction_rejects_links(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "l.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="links are not allowed"):
        datasets.safe_extract(tmp_path / "l.tar.gz", tmp_path / "out")


def test_restricted_unpickler_rejects_foreign_globals():
    evil = pickle.dumps({b"data": __import__("os").system}, protocol=2)
    with pytest.raises(UserError, match="forbidden global"):
        datasets.read_cifar_batch(evil, "batch")


def test_cifar_batch_pickle_roundtrip_matches_standard_pickle():
    a = (np.arange(3072 * 2) % 256).astype(np.uint8).reshape(2, 3072)
    d = pickle.loads(batch_pickle(a, [1, 2], b"b"), encoding="bytes")
    assert np.array_equal(d[b"data"], a) and d[b"labels"] == [1, 2]


def _params_with_cifar(tmp_path, archive, md5):
    import yaml

    from conftest import ROOT

    p = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    p["datasets"]["cifar10"] = {"source": "cifar10", "path": str(archive), "md5": md5}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    return f


def test_prepare_cifar10_writes_npz_and_manifest(tmp_path):
    import json

    md5, expected = write_archive(tmp_path / "c.tar.gz")
    ctc("prepare", "--params", _params_with_cifar(tmp_path, tmp_path / "c.tar.gz", md5), "--dataset", "cifar10",
        cwd=tmp_path)
    got = datasets.load_prepared(tmp_path / "data/cifar10.npz")
    assert np.array_equal(got["x_test"], expected["x_test"])
    m = json.loads((tmp_path / "data/cifar10.json").read_text())
    assert m["splits"] == {"train": 20, "test": 4} and m["arrays"]["x_train"]["dtype"] == "uint8"
    assert m["arrays"]["x_train"]["shape"] == [20, 3, 32, 32]
    import hashlib

    assert m["sha256"] == hashlib.sha256((tmp_path / "data/cifar10.npz").read_bytes()).hexdigest()
    assert str(tmp_path / "c.tar.gz") in m["provenance"]["inputs"]


@pytest.mark.parametrize("case", ["wrong_md5", "truncated", "missing"])
def test_prepare_bad_archive_is_one_line_and_keeps_outputs(tmp_path, case):
    md5, _ = write_archive(tmp_path / "c.tar.gz")
    if case == "wrong_md5":
        md5 = "0" * 32
    elif case == "truncated":
        blob = (tmp_path / "c.tar.gz").read_bytes()
        (tmp_path / "c.tar.gz").write_bytes(blob[:-200])
        md5 = datasets.md5_file(tmp_path / "c.tar.gz")
    else:
        (tmp_path / "c.tar.gz").unlink()
    (tmp_path / "data").mkdir()
    (tmp_path / "data/cifar10.npz").write_bytes(b"previous good output")
    p = ctc("prepare", "--params", _params_with_cifar(tmp_path, tmp_path / "c.tar.gz", md5), "--dataset", "cifar10",
            cwd=tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "c.tar.gz" in lines[0]
    assert (tmp_path / "data/cifar10.npz").read_bytes() == b"previous good output"
    assert sorted(x.name for x in (tmp_path / "data").iterdir()) == ["cifar10.npz"]  # no temp files left


def test_missing_prepared_data_is_one_line(tmp_path):
    from conftest import ROOT

    p = ctc("train", "--params", ROOT / "params/smoke.yaml", "--experiment", "two_gaussians-ict-ic-s0",
            cwd=tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == ("error: data/two_gaussians.npz: prepared data set not found; "
                                "run `ctcoupling prepare` first")


def _idx(a: np.ndarray) -> bytes:
    import struct

    return bytes([0, 0, 8, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(np.uint8).tobytes()


def _fashion_dir(tmp_path, truncate=False):
    import gzip

    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 6),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (2, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 2)}
    for name, a in arrays.items():
        blob = _idx(a)
        (tmp_path / name).write_bytes(gzip.compress(blob[:-5] if truncate and "t10k-images" in name else blob))
    return arrays


def test_fashion_mnist_reads_official_idx_files(tmp_path):
    arrays = _fashion_dir(tmp_path)
    got = datasets.build({"source": "fashion_mnist", "path": str(tmp_path), "check_md5": False})
    assert got["x_train"].shape == (6, 1, 28, 28) and got["x_train"].dtype == np.uint8
    assert np.array_equal(got["x_test"][:, 0], arrays["t10k-images-idx3-ubyte.gz"])
    assert np.array_equal(got["y_train"], arrays["train-labels-idx1-ubyte.gz"])
    with pytest.raises(UserError, match="md5 does not match the official file"):
        datasets.build({"source": "fashion_mnist", "path": str(tmp_path)})


def test_fashion_mnist_truncated_idx(tmp_path):
    _fashion_dir(tmp_path, truncate=True)
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz: 1563 bytes of data for shape \\(2, 28, 28\\); the file is truncated"):
        datasets.build({"source": "fashion_mnist", "path": str(tmp_path), "check_md5": False})


def test_npz_source_checks_shape_and_hash(tmp_path):
    import hashlib

    x = np.zeros((3, 3, 4, 4), np.uint8)
    artifacts.write_npz(tmp_path / "s.npz", {"x_train": x, "x_test": x[:1]})
    sha = hashlib.sha256((tmp_path / "s.npz").read_bytes()).hexdigest()
    got = datasets.build({"source": "npz", "path": str(tmp_path / "s.npz"), "shape": [3, 4, 4], "sha256": sha})
    assert got["x_train"].shape == (3, 3, 4, 4)
    with pytest.raises(UserError, match="images of shape \\(3, 4, 4\\), but params say shape \\[3, 8, 8\\]"):
        datasets.build({"source": "npz", "path": str(tmp_path / "s.npz"), "shape": [3, 8, 8]})
    with pytest.raises(UserError, match="sha256 does not match"):
        datasets.build({"source": "npz", "path": str(tmp_path / "s.npz"), "shape": [3, 4, 4], "sha256": "0" * 64})


def test_prepared_sets_are_memory_mapped_copy_on_write(tmp_path):
    """load_prepared maps the members of an uncompressed .npz (as prepare writes it) instead of reading
    them: the same values, shared pages; a write stays private; compressed archives are read as before."""
    arrays = {"x_train": np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4),
              "y_train": np.array([3, 1]), "x_test": np.ones((1, 2), np.float32), "empty": np.zeros((0, 2))}
    artifacts.write_npz(tmp_path / "p.npz", arrays)
    before = (tmp_path / "p.npz").read_bytes()
    got = datasets.load_prepared(tmp_path / "p.npz")
    assert isinstance(got["x_train"], np.memmap) and got.keys() == arrays.keys()
    assert all(np.array_equal(got[k], v) and got[k].dtype == v.dtype for k, v in arrays.items())
    got["x_train"][0] = 0
    assert (tmp_path / "p.npz").read_bytes() == before
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    plain = datasets.load_prepared(tmp_path / "c.npz")
    assert not isinstance(plain["x_train"], np.memmap) and np.array_equal(plain["y_train"], arrays["y_train"])
