"""Data preparation: toy 2-D sets, scikit-learn's digits, CIFAR-10 and Fashion-MNIST from the official files;
downsampled ImageNet, CelebA, LSUN and EDM dataset zips from theirs through `imagesets` (imagesets.SOURCES).

Every prepared data set is one deterministic .npz (`x_train`, `x_test`, and `y_*` for labelled
sets; images as uint8 NCHW, toy points as float32) plus a JSON manifest with its sha256, shapes,
dtypes, source and split sizes. Pure generators are separate from the file handling.
"""
from __future__ import annotations

import io
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from ctcoupling.data import imagesets
from ctcoupling.core.artifacts import md5_file, sha256_file
from ctcoupling.core.errors import UserError
from ctcoupling.data.imagesets import split

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]
TOY_SOURCES = ("two_gaussians", "eight_gaussians", "checkerboard")

# ---------------------------------------------------------------------------------------------
# Toy 2-D sets, in roughly [-1, 1]^2 like the scaled images.


def mixture_means(source: str) -> np.ndarray | None:
    """The component means of a Gaussian-mixture toy source (equal weights), None for another source."""
    if source == "two_gaussians":  # VCT Fig. 1: means (0, 0.5) and (0, -0.5)
        return np.array([[0.0, 0.5], [0.0, -0.5]])
    if source == "eight_gaussians":
        angles = 2 * np.pi * np.arange(8) / 8
        return 0.8 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return None


def mixture(spec: dict) -> tuple[np.ndarray, float] | None:
    """(means, std) of a data set that is a Gaussian mixture (its exact denoiser is closed-form), else None."""
    means = mixture_means(spec["source"])
    return None if means is None else (means, float(spec.get("std", 0.05)))


def toy_2d(source: str, n: int, rng: np.random.Generator, std: float = 0.05) -> np.ndarray:
    """n points of a named toy distribution, float32 of shape (n, 2)."""
    means = mixture_means(source)
    if means is not None:
        return (means[rng.integers(0, len(means), n)] + std * rng.standard_normal((n, 2))).astype(np.float32)
    if source == "checkerboard":  # 4x4 board on [-1, 1]^2, the 8 cells where (row + col) is even
        cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
        pick = cells[rng.integers(0, len(cells), n)]
        return ((pick + rng.random((n, 2))) * 0.5 - 1.0).astype(np.float32)
    raise ValueError(f"unknown toy source {source!r}")


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (values 0..16) as uint8 images (N, 1, 8, 8) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, d.target.astype(np.int64)


def to_model_space(x: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [-1, 1]; float toy points pass through unchanged."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    return x.astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """METHODS 8: round(clamp(x, -1, 1) * 127.5 + 127.5)."""
    return np.rint(np.clip(x, -1.0, 1.0) * 127.5 + 127.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# CIFAR-10: official python archive, md5-checked, safely extracted, restricted unpickling.


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR-10 batches contain: numpy arrays, dtypes, builtins."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return super().find_class(*target)


def read_cifar_batch(raw: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch to (images uint8 (N, 3, 32, 32), labels int64)."""
    try:
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data, labels = d[b"data"], d[b"labels"]
        images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, dtype=np.int64)
    except Exception as e:  # malformed content of any kind is a data error, not a crash
        raise UserError(f"{member}: not a valid CIFAR-10 batch ({e})") from None
    if len(images) != len(labels):
        raise UserError(f"{member}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _unsafe_member(m: tarfile.TarInfo, target: Path) -> str | None:
    p = PurePosixPath(m.name)
    if p.is_absolute() or ".." in p.parts:
        return "path escapes the target directory"
    if not (target / m.name).resolve().is_relative_to(target.resolve()):
        return "path escapes the target directory"
    if m.issym() or m.islnk():
        return "links are not allowed"
    if not (m.isfile() or m.isdir()):
        return "special files are not allowed"
    return None


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, rejecting any member that would land outside `target`."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                why = _unsafe_member(m, target)
                if why:
                    raise UserError(f"{archive}: refusing archive member '{m.name}': {why}")
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise UserError(f"{archive}: truncated or corrupt archive ({type(e).__name__}: {e}); "
                        "delete it and download it again") from None


def download(url: str, dest: Path) -> None:
    """Download to a temporary file next to `dest`, renamed into place when complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as tmp:
        try:
            from tqdm import tqdm

            with urllib.request.urlopen(url, timeout=60) as r:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                    while block := r.read(1 << 20):
                        tmp.write(block)
                        bar.update(len(block))
        except OSError as e:
            Path(tmp.name).unlink(missing_ok=True)
            raise UserError(f"{url}: download failed ({e}); download it by hand and set the "
                            f"dataset's `path` to the local file") from None
    Path(tmp.name).replace(dest)


def cifar10(path: Path, md5: str = CIFAR10_MD5, allow_download: bool = False) -> dict[str, np.ndarray]:
    """x_train (50000, 3, 32, 32), y_train, x_test (10000, ...), y_test from the official archive."""
    path = Path(path).expanduser()
    if not path.exists():
        if not allow_download:
            raise UserError(f"{path}: CIFAR-10 archive not found; get cifar-10-python.tar.gz from "
                            f"{CIFAR10_URL} and put it there, or set `download: true`")
        download(CIFAR10_URL, path)
    got = md5_file(path)
    if got != md5:
        raise UserError(f"{path}: md5 {got} does not match the expected {md5}; "
                        "the file is damaged or not cifar-10-python.tar.gz: delete it and download it again")
    with tempfile.TemporaryDirectory() as tmp:
        safe_extract(path, Path(tmp))
        root = Path(tmp) / CIFAR10_DIR
        out = {}
        for split_name, members in (("train", CIFAR10_TRAIN), ("test", CIFAR10_TEST)):
            xs, ys = [], []
            for m in members:
                f = root / m
                if not f.is_file():
                    raise UserError(f"{path}: archive lacks {CIFAR10_DIR}/{m}")
                x, y = read_cifar_batch(f.read_bytes(), f"{path}:{CIFAR10_DIR}/{m}")
                xs.append(x)
                ys.append(y)
            out[f"x_{split_name}"], out[f"y_{split_name}"] = np.concatenate(xs), np.concatenate(ys)
    return out


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST from the official IDX files; any other image set as a user-prepared .npz.

FASHION_MNIST_FILES = {  # name -> md5 of the official gzip files
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def read_idx(blob: bytes, name: str) -> np.ndarray:
    """An IDX array (the MNIST family's format): magic 0x0000 0x08 ndim, big-endian dims, uint8 data."""
    if len(blob) < 4 or blob[:3] != b"\x00\x00\x08":
        raise UserError(f"{name}: not an IDX file of unsigned bytes")
    ndim = blob[3]
    dims = tuple(int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"{name}: {data.size} bytes of data for shape {dims}; the file is truncated")
    return data.reshape(dims)


def fashion_mnist(directory: Path, check_md5: bool = True) -> dict[str, np.ndarray]:
    """x_train (60000, 1, 28, 28) uint8, y_train, x_test (10000, ...), y_test from the four official files."""
    import gzip

    directory = Path(directory).expanduser()
    arrays = {}
    for fname, md5 in FASHION_MNIST_FILES.items():
        f = directory / fname
        if not f.is_file():
            raise UserError(f"{f}: Fashion-MNIST file not found; put the four official *-ubyte.gz files there")
        if check_md5 and md5_file(f) != md5:
            raise UserError(f"{f}: md5 does not match the official file ({md5}); download it again")
        try:
            blob = gzip.decompress(f.read_bytes())
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{f}: truncated or corrupt gzip file ({e})") from None
        split = "train" if fname.startswith("train") else "test"
        a = read_idx(blob, str(f))
        arrays[("x_" if "images" in fname else "y_") + split] = a[:, None] if a.ndim == 3 else a.astype(np.int64)
    return arrays


def image_npz(path: Path, sha256: str | None = None) -> dict[str, np.ndarray]:
    """A user-prepared image set (e.g. FFHQ 64x64): .npz with uint8 x_train (N, C, H, W) and x_test."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: image archive not found; write an .npz with uint8 x_train and x_test (N, C, H, W)")
    if sha256 and sha256_file(path) != sha256:
        raise UserError(f"{path}: sha256 does not match the one in params ({sha256})")
    arrays = load_prepared(path)
    for key in ("x_train", "x_test"):
        a = arrays.get(key)
        if a is None or a.dtype != np.uint8 or a.ndim != 4:
            raise UserError(f"{path}: needs '{key}' as uint8 of shape (N, C, H, W)")
    return arrays


# ---------------------------------------------------------------------------------------------
# One entry point per data set spec (params `datasets.<name>`).


def build(spec: dict) -> dict[str, np.ndarray]:
    """The arrays of a prepared data set, from its params spec. Deterministic given the spec."""
    source = spec["source"]
    if source in imagesets.SOURCES:
        return imagesets.build(spec)
    if source in TOY_SOURCES:
        rng = np.random.default_rng(spec["seed"])
        x = toy_2d(source, spec["n_train"] + spec["n_test"], rng, spec.get("std", 0.05))
        return {"x_train": x[: spec["n_train"]], "x_test": x[spec["n_train"]:]}
    if source == "digits":
        images, labels = digits_uint8()
        tr, te = split(len(images), spec["n_test"], np.random.default_rng(spec["seed"]))
        return {"x_train": images[tr], "y_train": labels[tr], "x_test": images[te], "y_test": labels[te]}
    if source == "cifar10":
        return cifar10(Path(spec["path"]), spec.get("md5", CIFAR10_MD5), spec.get("download", False))
    if source == "fashion_mnist":
        return fashion_mnist(Path(spec["path"]), spec.get("check_md5", True))
    if source == "npz":
        arrays = image_npz(Path(spec["path"]), spec.get("sha256"))
        if list(arrays["x_train"].shape[1:]) != list(spec["shape"]):
            raise UserError(f"{spec['path']}: images of shape {arrays['x_train'].shape[1:]}, but params say "
                            f"shape {spec['shape']}")
        return arrays
    raise ValueError(f"unknown source {source!r}")


def source_files(spec: dict) -> list[Path]:
    """The local files a data set is prepared from (hashed into its provenance)."""
    if spec["source"] in imagesets.SOURCES:
        return imagesets.source_files(spec)
    if spec["source"] in ("cifar10", "npz"):
        return [Path(spec["path"]).expanduser()]
    if spec["source"] == "fashion_mnist":
        return [Path(spec["path"]).expanduser() / f for f in FASHION_MNIST_FILES]
    return []


def point_reference(prepared: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """The images samples are compared with point by point (W2, the figures), and which split they are:
    the held-out `x_test`, or the training images where every image trains (n_test: 0, as sony/vct's
    ImageNet 64, whose FID is measured against the training set too)."""
    return (prepared["x_test"], "test") if len(prepared["x_test"]) else (prepared["x_train"], "train")


def load_prepared(path: str | Path) -> dict[str, np.ndarray]:
    """Read a prepared .npz (no pickles admitted). Its members are memory-mapped where they are stored
    uncompressed, as `ctcoupling prepare` writes them (`_mapped_members`), so a large set is paged in as
    read and shared between the processes of a job (eight torchrun ranks on ImageNet 64: one copy of
    15.7 GB in the page cache, not eight); copy-on-write, so an in-place change stays private."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: prepared data set not found; run `ctcoupling prepare` first")
    try:
        mapped = _mapped_members(path)
        if mapped is not None:
            return mapped
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise UserError(f"{path}: unreadable prepared data set ({e}); run `ctcoupling prepare` again") from None


def _mapped_members(path: Path) -> dict[str, np.ndarray] | None:
    """Every .npy member of an uncompressed .npz as a copy-on-write np.memmap at its data's offset, or None
    where a member is compressed (np.load then reads it). numpy memory-maps only plain .npy files, hence
    this: the member's bytes start after the zip local header (30 bytes, its name and extra field) and the
    .npy header, which numpy's own header readers parse."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"member {info.filename} holds Python objects, which are not admitted")
            name = info.filename[:-4]
            if 0 in shape:
                out[name] = np.empty(shape, dtype)
            else:
                out[name] = np.memmap(path, dtype=dtype, mode="c", shape=shape, order="F" if fortran else "C",
                                      offset=f.tell())
    return out


def describe(arrays: dict[str, np.ndarray]) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(arrays.items())}
