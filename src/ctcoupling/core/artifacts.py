"""Atomic, deterministic artifact writing and provenance records.

Every file a stage produces goes through `atomic_write`: it is written to a temporary file in
the target directory and renamed into place, so a killed job never leaves a truncated file under
its final name. Writers avoid timestamps so that a stage run twice gives bitwise-equal bytes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary sibling of `path` for writing; rename it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """A temporary sibling directory to fill; on success it takes `path`'s place whole (the previous
    directory removed), so `path` never holds a partial tree."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        old = tmp.with_suffix(".old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _npz_into(f, arrays: dict[str, np.ndarray]) -> None:
    """An .npz archive written into the seekable binary file f, member by member (no copy of an array
    in memory: a prepared ImageNet 64 is 15.7 GB), with fixed member timestamps (np.savez stamps the
    current time). Zip64 records only where a member needs them, so small archives are plain zips."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            with zf.open(info, "w", force_zip64=a.nbytes + (1 << 16) > zipfile.ZIP64_LIMIT) as member:
                np.lib.format.write_array(member, a, allow_pickle=False)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    _npz_into(buf, arrays)
    return buf.getvalue()


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """`npz_bytes(arrays)` into `path`, atomically, streamed to the file."""
    with atomic_write(path, "wb") as f:
        _npz_into(f, arrays)


def write_torch(path, obj) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def md5_file(path: str | Path) -> str:
    """The md5 of a file (the official archives' published hashes are md5s)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def provenance(stage: str, params: dict, inputs: list[str | os.PathLike], code: tuple[str, ...] = ()) -> dict:
    """What produced an artifact: the stage, the params it read, its inputs' sha256, the package version
    and the sha256 of the package modules the stage runs (`code`, names in this package).

    Content-stable: equal inputs, params and code give an equal record, so provenance never makes
    equal content hash differently. (It used to record the git commit, which changed every JSON
    artifact, and so every DVC hash downstream, at every commit, however little the code changed.)"""
    from ctcoupling import __version__
    from ctcoupling.core import portable

    here = Path(__file__).resolve().parents[1]  # the package: `code` names are paths in it (dag.CODE)
    return {
        "stage": stage,
        "params": params,
        "inputs": {str(p): sha256_file(p) for p in inputs},
        "package_version": __version__,
        "code": {m: sha256_file(here / m) for m in code},
        "cpu_kernels": portable.in_effect(),
    }

