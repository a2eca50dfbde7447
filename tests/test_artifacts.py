from pathlib import Path

import numpy as np
import pytest

from ctcoupling.core import artifacts


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_write_creates_readable_file(tmp_path):
    artifacts.write_json(tmp_path / "a/b.json", {"x": 1})
    assert (tmp_path / "a/b.json").read_text() == '{\n  "x": 1\n}\n'
    assert (tmp_path / "a/b.json").stat().st_mode & 0o044  # group/other can read, unlike mkstemp's 0600


def test_npz_is_bitwise_deterministic_and_loads_without_pickle(tmp_path):
    arrays = {"b": np.arange(5, dtype=np.uint8), "a": np.ones((2, 3), np.float32)}
    blob = artifacts.npz_bytes(arrays)
    assert blob == artifacts.npz_bytes(dict(reversed(list(arrays.items()))))
    (tmp_path / "x.npz").write_bytes(blob)
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["a", "b"] and np.array_equal(z["b"], arrays["b"])
    artifacts.write_npz(tmp_path / "y.npz", arrays)  # streamed member by member into the file: the same bytes
    assert (tmp_path / "y.npz").read_bytes() == blob


def test_torch_checkpoint_bytes_are_deterministic(tmp_path):
    import torch

    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 3, "config": {"a": [1, 2]}}
    artifacts.write_torch(tmp_path / "a.pt", state)
    artifacts.write_torch(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    back = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(back["w"], state["w"]) and back["config"] == {"a": [1, 2]}


def test_provenance_hashes_inputs(tmp_path):
    (tmp_path / "in.bin").write_bytes(b"abc")
    rec = artifacts.provenance("train", {"k": 1}, [tmp_path / "in.bin"])
    assert rec["inputs"][str(tmp_path / "in.bin")] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert rec["stage"] == "train" and rec["params"] == {"k": 1} and rec["package_version"]


def test_provenance_is_content_stable_and_hashes_the_stages_code(tmp_path):
    """Issue 13: equal inputs, params and code give an equal record (no git commit, no time), and the
    record names the sha256 of each module the stage runs."""
    import hashlib

    from ctcoupling.pipeline import dag

    (tmp_path / "in.bin").write_bytes(b"abc")
    code = dag.CODE["train"]
    rec = artifacts.provenance("train", {"k": 1}, [tmp_path / "in.bin"], code)
    assert rec == artifacts.provenance("train", {"k": 1}, [tmp_path / "in.bin"], code)
    assert "git_commit" not in rec and set(rec["code"]) == set(code) and "core/artifacts.py" in code
    src = Path(artifacts.__file__).parents[1]
    assert rec["code"]["train/training.py"] == hashlib.sha256((src / "train" / "training.py").read_bytes()).hexdigest()
