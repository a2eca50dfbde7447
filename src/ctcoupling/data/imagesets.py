"""Image sets read in place from their official distribution formats (nothing is extracted to disk).

- `imagenet_npz`: downsampled ImageNet (Chrabaszcz et al. 2017, image-net.org "Downsampled ImageNet"), the
  unzipped train_data_batch_1..10.npz and val_data.npz of the 32x32 or 64x64 release.
- `celeba`: aligned-and-cropped CelebA (img_align_celeba.zip, list_eval_partition.txt) as
  torchvision.datasets.CelebA reads it, resized and center-cropped as consistency_GC's train_consistency.py does.
- `lsun`: an official LSUN export (e.g. church_outdoor_train_lmdb.zip unzipped), an LMDB of encoded images.
- `edm_zip`: a dataset zip of NVlabs/edm's dataset_tool.py, read as sony/vct's utils/dataset.py
  ImageFolderDataset reads it (its ImageNet 64x64).

Each reader returns what data.build returns: x_train, x_test as uint8 (N, C, H, W) and, for labelled sets,
y_train, y_test as int64 class indices 0..K-1. Every data problem is a one-line UserError naming the file
(and the archive member or LMDB key) and saying how to fix it.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from ctcoupling.core.artifacts import md5_file, sha256_file
from ctcoupling.core.errors import UserError

SOURCES = ("imagenet_npz", "celeba", "lsun", "edm_zip")


def sample_shape(spec: dict) -> tuple[int, int, int]:
    """(C, H, W) of one image of a spec of these sources, from the spec alone."""
    return spec.get("channels", 3), spec["resolution"], spec["resolution"]


def build(spec: dict) -> dict[str, np.ndarray]:
    source, path, res = spec["source"], Path(spec["path"]), spec["resolution"]
    if source == "imagenet_npz":
        return imagenet_npz(path, res, spec.get("sha256"))
    if source == "celeba":
        return celeba(path, Path(spec["partition"]), res, spec.get("check_md5", True))
    if source == "lsun":
        return lsun(path, res, spec["n_test"], spec["seed"])
    if source == "edm_zip":
        return edm_zip(path, res, spec["n_test"], spec["seed"], spec.get("sha256"), spec.get("channels", 3))
    raise ValueError(f"unknown image source {source!r}")


def source_files(spec: dict) -> list[Path]:
    """The local files a spec reads (hashed into the prepared set's provenance)."""
    path = Path(spec["path"]).expanduser()
    if spec["source"] == "imagenet_npz":
        return [path / f for f in IMAGENET_FILES]
    if spec["source"] == "celeba":
        return [path, Path(spec["partition"]).expanduser()]
    if spec["source"] == "lsun":
        return [path / "data.mdb"]
    return [path]


# ---------------------------------------------------------------------------------------------
# Shared pieces: hashes, safe zip members, decoding, the GC-style resize + center crop.


def check_hash(path: Path, expected: str | None, algo: str, what: str) -> None:
    """`what`: the file it should be, for the message (e.g. 'img_align_celeba.zip')."""
    if expected is None:
        return
    got = (sha256_file if algo == "sha256" else md5_file)(path)
    if got != expected:
        raise UserError(f"{path}: {algo} {got} does not match the expected {expected}; the file is damaged "
                        f"or not {what}: get it again")


def unsafe_name(name: str) -> bool:
    """An archive member name that is absolute (POSIX or Windows) or climbs out with '..'."""
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    return posix.is_absolute() or win.is_absolute() or bool(win.drive) or ".." in posix.parts or ".." in win.parts


def open_zip(path: Path) -> zipfile.ZipFile:
    """A zip opened for reading in place, after checking that no member name is unsafe."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"{path}: truncated or corrupt zip archive ({e}); get it again") from None
    bad = next((n for n in z.namelist() if unsafe_name(n)), None)
    if bad is not None:
        z.close()
        raise UserError(f"{path}: refusing archive member '{bad}': absolute path or '..' (not an official archive)")
    return z


def read_member(z: zipfile.ZipFile, path: Path, name: str) -> bytes:
    try:
        return z.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
        raise UserError(f"{path}:{name}: corrupt archive member ({e}); get the archive again") from None


def decode(blob: bytes, where: str) -> Image.Image:
    """Decoded image (fully loaded); any decoder failure is a UserError naming `where`."""
    try:
        img = Image.open(io.BytesIO(blob))
        img.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise UserError(f"{where}: corrupt or unreadable image ({type(e).__name__}: {e})") from None
    return img


def resize_center_crop(img: Image.Image, res: int) -> Image.Image:
    """torchvision's Resize(res, LANCZOS) then CenterCrop(res) on a PIL image, with Pillow alone.

    Resize: the shorter side to `res`, the longer to int(res * long / short), PIL LANCZOS (no resampling when
    the size is already right). CenterCrop: offsets int(round((size - res) / 2)) (Python's round).
    """
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(res * long / short)
    size = (res, new_long) if w <= h else (new_long, res)
    if size != (w, h):
        img = img.resize(size, Image.Resampling.LANCZOS)
    top, left = int(round((size[1] - res) / 2.0)), int(round((size[0] - res) / 2.0))
    return img.crop((left, top, left + res, top + res))


def chw(img: Image.Image | np.ndarray) -> np.ndarray:
    """HWC (or HW grayscale) pixels as uint8 CHW."""
    a = np.asarray(img, dtype=np.uint8)
    return (a[:, :, None] if a.ndim == 2 else a).transpose(2, 0, 1)


def fill(images: Iterable[np.ndarray], parts: list[np.ndarray], shape: tuple[int, ...], desc: str) -> list[np.ndarray]:
    """The images, in order, straight into one preallocated uint8 array per part (sorted indices that together
    cover 0..n-1 once, e.g. a train/test split), with a progress bar: no full-size copy is ever made."""
    n = sum(map(len, parts))
    outs = [np.empty((len(ix), *shape), np.uint8) for ix in parts]
    part, pos = np.empty(n, np.int64), np.empty(n, np.int64)
    for k, ix in enumerate(parts):
        part[ix], pos[ix] = k, np.arange(len(ix))
    i = 0
    for i, x in enumerate(tqdm(images, total=n, desc=desc, unit="img"), 1):
        if i > n:
            break
        outs[part[i - 1]][pos[i - 1]] = x
    if i != n:
        raise UserError(f"{desc}: {i} images read but {n} expected; the source changed while being read")
    return outs


def split(n: int, n_test: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, each sorted: a random n_test of range(n) from `rng` as the test set (every
    source without an official split: scikit-learn's digits, LSUN, EDM zips)."""
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_indices(n: int, n_test: int, seed: int, where: Path) -> list[np.ndarray]:
    """[train, test] indices as data.split makes them: a seeded random n_test of n as the test set."""
    if n_test >= n:
        raise UserError(f"{where}: n_test {n_test} leaves no training images (it holds {n}); lower n_test")
    return list(split(n, n_test, np.random.default_rng(seed)))


# ---------------------------------------------------------------------------------------------
# Downsampled ImageNet: the official .npz batches.

IMAGENET_TRAIN = [f"train_data_batch_{i}.npz" for i in range(1, 11)]
IMAGENET_VAL = "val_data.npz"
IMAGENET_FILES = IMAGENET_TRAIN + [IMAGENET_VAL]
IMAGENET_CLASSES = 1000


def _imagenet_zips(res: int) -> str:
    train = ("Imagenet64_train_part1_npz.zip and Imagenet64_train_part2_npz.zip" if res == 64
             else f"Imagenet{res}_train_npz.zip")
    return f"{train} and Imagenet{res}_val_npz.zip"


def _npz_array(path: Path, key: str) -> np.ndarray:
    corrupt = f"{path}: truncated or corrupt .npz ({{}}); unzip the official archive again"
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(corrupt.format(e)) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: not an .npz archive; not an official Downsampled ImageNet batch")
    with z:
        if key not in z.files:
            raise UserError(f"{path}: lacks '{key}'; not an official Downsampled ImageNet batch")
        try:
            return z[key]
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise UserError(corrupt.format(e)) from None
            raise UserError(f"{path}: '{key}' is stored as pickled Python objects, which are not loaded; "
                            f"re-save it as a plain array (np.savez with {key}=np.asarray(...))") from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise UserError(corrupt.format(e)) from None


def _imagenet_labels(path: Path) -> np.ndarray:
    """The 1-based labels of one batch as 0-based int64, range-checked."""
    y = _npz_array(path, "labels")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{path}: 'labels' must be a 1-D integer array, got {y.dtype} of shape {y.shape}")
    bad = np.flatnonzero((y < 1) | (y > IMAGENET_CLASSES))
    if bad.size:
        raise UserError(f"{path}: label {y[bad[0]]} at index {bad[0]} is outside 1..{IMAGENET_CLASSES} "
                        "(the official files number the classes from 1)")
    return y.astype(np.int64) - 1


def _imagenet_split(directory: Path, files: list[str], res: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = [_imagenet_labels(directory / f) for f in files]  # small: sizes the one image array first
    x = np.empty((sum(map(len, labels)), 3, res, res), np.uint8)
    i = 0
    for f, y in zip(tqdm(files, desc=f"ImageNet {res}x{res} {name}", unit="file"), labels):
        data = _npz_array(directory / f, "data")
        if data.dtype != np.uint8 or data.shape != (len(y), 3 * res * res):
            raise UserError(f"{directory / f}: 'data' is {data.dtype} of shape {data.shape}, expected uint8 "
                            f"({len(y)}, {3 * res * res}) for {len(y)} labels at resolution {res}; "
                            f"are these the Imagenet{res} files?")
        x[i:i + len(y)] = data.reshape(-1, 3, res, res)  # rows are the R, G, B planes in turn
        i += len(y)
        del data
    return x, np.concatenate(labels)


def imagenet_npz(directory: Path, res: int, sha256: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Downsampled ImageNet 32x32 or 64x64 from the official unzipped .npz batches in `directory`.

    train_data_batch_1..10.npz make x_train/y_train (in that order), val_data.npz x_test/y_test. Each holds
    `data` uint8 (N, 3 * res * res), rows laid out as the R, G, B planes, and `labels` 1..1000 (made 0-based);
    the train batches also hold `mean`, unused. There are no official hashes: `sha256` maps file names to the
    hashes to check. The images go straight into one preallocated array (the 64x64 train set is 15.7 GB).
    """
    directory = Path(directory).expanduser()
    if res not in (32, 64):
        raise UserError(f"{directory}: Downsampled ImageNet comes at resolution 32 or 64, not {res}")
    unknown = sorted(set(sha256 or {}) - set(IMAGENET_FILES))
    if unknown:
        raise UserError(f"{directory}: sha256 names '{unknown[0]}', not one of the official files "
                        f"({', '.join(IMAGENET_FILES)})")
    for f in IMAGENET_FILES:
        if not (directory / f).is_file():
            raise UserError(f"{directory / f}: Downsampled ImageNet file not found; get {_imagenet_zips(res)} "
                            f"from image-net.org (Downsampled ImageNet) and unzip them into {directory}")
    for f, h in (sha256 or {}).items():
        check_hash(directory / f, h, "sha256", f"the {f} the params name")
    out = {}
    for name, files in (("train", IMAGENET_TRAIN), ("test", [IMAGENET_VAL])):
        out[f"x_{name}"], out[f"y_{name}"] = _imagenet_split(directory, files, res, name)
    return out


# ---------------------------------------------------------------------------------------------
# CelebA: the official aligned-and-cropped zip and partition file, as torchvision.datasets.CelebA reads them.

CELEBA_MD5 = {  # torchvision.datasets.CelebA.file_list
    "img_align_celeba.zip": "00d2c5bc6d35e252742224ab0c1e8fcb",
    "list_eval_partition.txt": "d32c9cbf5e040fd4025c592c306e6668",
}
CELEBA_DIR = "img_align_celeba"
CELEBA_SPLITS = {"train": 0, "test": 2}  # torchvision's split codes; 1 (valid) is not used
CELEBA_PAGE = "the CelebA page (mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"


def read_partition(path: Path) -> list[tuple[str, int]]:
    """list_eval_partition.txt: one '<image>.jpg <0|1|2>' line per image, in the official order."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable partition file ({e}); get list_eval_partition.txt again") from None
    entries = []
    for k, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2") or "/" in parts[0] or unsafe_name(parts[0]):
            raise UserError(f"{path}:{k}: expected '<image>.jpg <0|1|2>', got {line.strip()!r}; "
                            "not the official list_eval_partition.txt")
        entries.append((parts[0], int(parts[1])))
    return entries


def _celeba_image(z: zipfile.ZipFile, path: Path, member: str, res: int) -> np.ndarray:
    img = decode(read_member(z, path, member), f"{path}:{member}")
    return chw(resize_center_crop(img.convert("RGB"), res))


def celeba(path: Path, partition: Path, res: int, check_md5: bool = True) -> dict[str, np.ndarray]:
    """Aligned CelebA at res x res: x_train (partition 0, 162770 images) and x_test (partition 2, 19962).

    The validation partition (1) is not used. Images are read in the partition file's order (torchvision's),
    straight from img_align_celeba.zip, and made res x res as consistency_GC's train_consistency.py does
    (torchvision CelebA with Resize(res, LANCZOS) + CenterCrop(res)): see resize_center_crop. Unlabelled.
    """
    path, partition = Path(path).expanduser(), Path(partition).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: CelebA archive not found; get img_align_celeba.zip ('Align&Cropped Images') "
                        f"from {CELEBA_PAGE} and set `path` to it")
    if not partition.is_file():
        raise UserError(f"{partition}: CelebA partition file not found; get list_eval_partition.txt (the 'Eval' "
                        f"folder of {CELEBA_PAGE}) and set `partition` to it")
    if check_md5:
        for f, official in ((path, "img_align_celeba.zip"), (partition, "list_eval_partition.txt")):
            check_hash(f, CELEBA_MD5[official], "md5", f"the official {official}")
    entries = read_partition(partition)
    with open_zip(path) as z:
        members = set(z.namelist())
        lacking = [n for n, _ in entries if f"{CELEBA_DIR}/{n}" not in members]
        if lacking:
            raise UserError(f"{path}: archive lacks {CELEBA_DIR}/{lacking[0]} ({len(lacking)} image(s) of "
                            f"{partition.name} missing); not the official img_align_celeba.zip")
        out = {}
        for name, code in CELEBA_SPLITS.items():
            files = [n for n, p in entries if p == code]
            out[f"x_{name}"] = fill((_celeba_image(z, path, f"{CELEBA_DIR}/{n}", res) for n in files),
                                    [np.arange(len(files))], (3, res, res), f"CelebA {name}")[0]
    return out


# ---------------------------------------------------------------------------------------------
# LSUN: the official LMDB export.


def lsun(path: Path, res: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """An LSUN category at res x res from its official LMDB (values: encoded images, webp in the export).

    Keys are read in order; every image is decoded to RGB and made res x res by resize_center_crop (the shorter
    side to res with LANCZOS, then a center crop). The GC paper does not publish its LSUN preprocessing; this is
    the common practice and the one its CelebA pipeline uses. NVlabs/edm's dataset_tool.py `center-crop` differs:
    it first crops the central min(H, W) square (offsets rounded down) and then resizes it to res with LANCZOS.
    A seeded random n_test images make x_test (as data.split), the rest x_train. No official hash exists.
    """
    import lmdb

    path = Path(path).expanduser()
    if not (path / "data.mdb").is_file():
        raise UserError(f"{path}: LSUN lmdb not found (no data.mdb there); get the category's *_lmdb.zip "
                        "(e.g. church_outdoor_train_lmdb.zip, from the LSUN site or fyu/lsun's download.py), "
                        "unzip it and set `path` to the directory that holds data.mdb")
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
    except lmdb.Error as e:
        raise UserError(f"{path}: not a readable LMDB ({type(e).__name__}: {e}); unzip the official "
                        "*_lmdb.zip again") from None

    def images(txn):
        for key, value in txn.cursor():
            img = decode(value, f"{path}: key {key.decode('utf-8', 'replace')}")
            yield chw(resize_center_crop(img.convert("RGB"), res))

    try:
        with env.begin(write=False) as txn:
            parts = split_indices(txn.stat()["entries"], n_test, seed, path)
            x_train, x_test = fill(images(txn), parts, (3, res, res), f"LSUN {path.name}")
    except lmdb.Error as e:
        raise UserError(f"{path}: corrupt LMDB ({type(e).__name__}: {e}); unzip the official *_lmdb.zip "
                        "again") from None
    finally:
        env.close()
    return {"x_train": x_train, "x_test": x_test}


# ---------------------------------------------------------------------------------------------
# NVlabs/edm dataset_tool.py zips, as sony/vct's ImageFolderDataset reads them.


def _edm_labels(z: zipfile.ZipFile, path: Path, names: list[str]) -> np.ndarray | None:
    """dataset.json's 0-based class labels in image order, or None when unlabelled."""
    if "dataset.json" not in z.namelist():
        return None
    where = f"{path}:dataset.json"
    try:
        labels = json.loads(read_member(z, path, "dataset.json"))["labels"]
    except (ValueError, TypeError, KeyError) as e:
        labels = e
    if labels is None:
        return None
    if not isinstance(labels, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                                               for p in labels):
        raise UserError(f"{where}: expected {{\"labels\": [[relative_path, label], ...] or null}}; "
                        "not a dataset_tool.py dataset.json")
    table = dict(labels)
    lacking = [n for n in names if n not in table]
    if lacking:
        raise UserError(f"{where}: no label for '{lacking[0]}' ({len(lacking)} image(s) lack one)")
    for n in names:
        v = table[n]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise UserError(f"{where}: label {v!r} of '{n}' is not a class index (an integer >= 0); "
                            "only class labels are supported")
    return np.array([table[n] for n in names], dtype=np.int64)


def _edm_image(z: zipfile.ZipFile, path: Path, name: str, res: int, channels: int) -> np.ndarray:
    img = decode(read_member(z, path, name), f"{path}:{name}")
    if img.mode not in ("RGB", "L"):
        raise UserError(f"{path}:{name}: image mode {img.mode}; dataset_tool.py writes RGB or L (grayscale) images")
    c = 3 if img.mode == "RGB" else 1
    if img.size != (res, res) or c != channels:
        raise UserError(f"{path}:{name}: image is {img.size[0]}x{img.size[1]} with {c} channel(s); params say "
                        f"{res}x{res} with {channels}; make the zip with dataset_tool.py --resolution={res}x{res}")
    return chw(img)


def edm_zip(path: Path, res: int, n_test: int, seed: int, sha256: str | None = None,
            channels: int = 3) -> dict[str, np.ndarray]:
    """A dataset_tool.py zip: every member with an image extension, in sorted name order (ImageFolderDataset's),
    each res x res RGB (or grayscale with channels 1); labels from the top-level dataset.json when it has them.

    A seeded random n_test images make x_test (as data.split), the rest x_train.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: dataset zip not found; make it with NVlabs/edm's dataset_tool.py (e.g. "
                        f"--dest=imagenet-{res}x{res}.zip --resolution={res}x{res} --transform=center-crop) "
                        "and set `path` to it")
    check_hash(path, sha256, "sha256", "the zip the params name")
    Image.init()
    with open_zip(path) as z:
        names = sorted(n for n in z.namelist() if os.path.splitext(n)[1].lower() in Image.EXTENSION)
        if not names:
            raise UserError(f"{path}: no images in the zip; not a dataset_tool.py dataset")
        labels = _edm_labels(z, path, names)
        tr, te = split_indices(len(names), n_test, seed, path)
        out = dict(zip(("x_train", "x_test"), fill((_edm_image(z, path, n, res, channels) for n in names),
                                                   [tr, te], (channels, res, res), path.name)))
    if labels is not None:
        out["y_train"], out["y_test"] = labels[tr], labels[te]
    return out
