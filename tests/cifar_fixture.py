"""A tiny CIFAR-10 archive in the exact official format (cifar-10-python.tar.gz).

The official batches are Python-2 pickles (protocol 2) of a dict with byte-string keys
b'batch_label', b'labels', b'data' (a numpy uint8 array, N x 3072) and b'filenames'. Python 3's
pickler would write bytes through `_codecs.encode`, which the real files never contain, so the
opcodes are emitted by hand here, as Python 2's cPickle wrote them.
"""
from __future__ import annotations

import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np


def _s(b: bytes) -> bytes:  # py2 str
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


def _int(i: int) -> bytes:
    return b"K" + bytes([i]) if 0 <= i < 256 else b"J" + struct.pack("<i", i)


def _ndarray(a: np.ndarray) -> bytes:
    out = b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _int(0) + b"\x85" + _s(b"b") + b"\x87R"
    dtype = b"cnumpy\ndtype\n" + _s(b"u1") + _int(0) + _int(1) + b"\x87R"
    dtype += b"(" + _int(3) + _s(b"|") + b"NNN" + b"J\xff\xff\xff\xff" + b"J\xff\xff\xff\xff" + _int(0) + b"tb"
    shape = b"(" + b"".join(_int(s) if s < 256 else b"J" + struct.pack("<i", s) for s in a.shape) + b"t"
    state = b"(" + _int(1) + shape + dtype + b"\x89" + _s(a.tobytes()) + b"tb"
    return out + state


def batch_pickle(data: np.ndarray, labels: list[int], label: bytes) -> bytes:
    body = b"\x80\x02}(" + _s(b"batch_label") + _s(label)
    body += _s(b"labels") + b"](" + b"".join(_int(int(v)) for v in labels) + b"e"
    body += _s(b"data") + _ndarray(data)
    body += _s(b"filenames") + b"](" + b"".join(_s(f"img_{i}.png".encode()) for i in range(len(labels))) + b"e"
    return body + b"u."


def write_archive(path: Path, n_per_batch: int = 4, seed: int = 0, extra_members: dict[str, bytes] | None = None):
    """Write the archive; returns (md5, expected arrays) so tests can check what prepare reads."""
    rng = np.random.default_rng(seed)
    expected = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    members = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        members[f"cifar-10-batches-py/{name}"] = batch_pickle(data, labels, name.encode())
        split = "test" if name == "test_batch" else "train"
        expected[f"x_{split}"].append(data.reshape(-1, 3, 32, 32))
        expected[f"y_{split}"].append(np.array(labels))
    members["cifar-10-batches-py/batches.meta"] = b"\x80\x02}(" + _s(b"num_cases_per_batch") + _int(n_per_batch) + b"u."
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    members.update(extra_members or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest(), {k: np.concatenate(v) for k, v in expected.items()}
