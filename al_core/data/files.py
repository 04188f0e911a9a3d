"""Real datasets from files: Fashion-MNIST, MNIST, SVHN (torchvision's on-disk layouts) and the
researcher's own data (`npz`, `imagefolder`).

Every loader returns uint8 N x C x H x W arrays and int64 labels, exactly as the bundled datasets
do; `finish_spec` fills in what only the files know (classes, channels, image size, pool size) and
applies the sweep's `dataset.pad` / `dataset.flip`. Damaged or inconsistent files raise DataError
with one line naming the file and what was expected; nothing is written before the data is good
(the imagefolder cache is written only after every image decoded).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from al_core import seeding
from al_core.data.builtin import CIFAR_DIRS
from al_core.data.spec import REQUIRED_FILES, Arrays, DatasetConfig, DatasetSpec, register
from al_core.errors import ConfigError, DataError, DataMissing

MAKE_DATA = "run `make data SWEEP=<your sweep>` on a node with internet (it downloads into dataset.root) or point dataset.root at an existing copy"


# ----------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: the idx files under <root>/<Dir>/raw/, gzipped or not.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_DIRS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
for _name, _dir in IDX_DIRS.items():  # what the login node checks before submitting (plain or .gz)
    REQUIRED_FILES[_name] = lambda root, _dir=_dir: [Path(root) / _dir / "raw" / f for pair in IDX_FILES.values() for f in pair]
REQUIRED_FILES["svhn"] = lambda root: [Path(root) / "train_32x32.mat", Path(root) / "test_32x32.mat"]


def _find(base: Path, name: str, dataset: str) -> Path:
    for candidate in (base / name, base / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataMissing(f"dataset {dataset} not found: {base / name}(.gz) is missing; {MAKE_DATA}")


IDX_MAX_BYTES = 2**31  # 2 GiB of pixels in one idx file (MNIST's training images: 47 MB)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte idx file (LeCun's MNIST format), gzipped or not, as a uint8 array. Read as a
    stream: no more than the header declares is decompressed, and a header declaring over
    IDX_MAX_BYTES is refused (a gzip bomb, or a damaged header, is one `error:` line)."""
    header = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            head = f.read(header)
            dims = _idx_header(path, head, ndim)
            n = math.prod(dims)
            if n > IDX_MAX_BYTES:
                raise DataError(
                    f"{path}: the header declares {' x '.join(map(str, dims))} = {n:,} bytes, over the "
                    f"{IDX_MAX_BYTES:,} read at most; expected an idx file of a dataset that fits in memory"
                )
            raw, extra = f.read(n), len(f.read(1))
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(
            f"{path}: not a complete gzip file ({type(e).__name__}: {e}); expected a gzipped idx file, "
            "delete it and run `make data` again"
        ) from None
    if len(raw) != n or extra:
        got = f"{len(raw)}" if not extra else f"more than {n}"
        raise DataError(
            f"{path}: {got} bytes of data, expected {n} for shape {' x '.join(map(str, dims))}; "
            "the file is truncated or damaged, delete it and run `make data` again"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _idx_header(path: Path, head: bytes, ndim: int) -> tuple[int, ...]:
    """The dimensions an idx header declares (DataError for a short or foreign header)."""
    header = 4 + 4 * ndim
    if len(head) < header:
        raise DataError(f"{path}: {len(head)} bytes, expected an idx header of {header} bytes; the file is truncated")
    magic = int.from_bytes(head[:4], "big")
    expected = 0x0800 | ndim  # 0x08: unsigned byte, then the number of dimensions
    if magic != expected:
        raise DataError(
            f"{path}: idx magic number {magic:#010x}, expected {expected:#010x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}); not the file its name says"
        )
    return struct.unpack(f">{ndim}I", head[4:header])


def _idx_split(base: Path, split: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    img_path, lab_path = (_find(base, n, dataset) for n in IDX_FILES[split])
    x, y = read_idx(img_path, 3), read_idx(lab_path, 1)
    if len(x) != len(y):
        raise DataError(f"{lab_path}: {len(y)} labels, expected {len(x)} (one per image of {img_path})")
    if y.size and y.max() > 9:
        raise DataError(f"{lab_path}: label {int(y.max())}, expected labels 0..9")
    return x[:, None].copy(), y.astype(np.int64)


def load_idx(name: str, cfg: DatasetConfig) -> Arrays:
    base = Path(cfg.root) / IDX_DIRS[name] / "raw"
    return (*_idx_split(base, "train", name), *_idx_split(base, "test", name))


# ----------------------------------------------------------------------------------------------
# SVHN: torchvision's train_32x32.mat / test_32x32.mat directly under <root>.
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    if not path.is_file():
        raise DataMissing(f"dataset svhn not found: {path} is missing; {MAKE_DATA}")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except Exception as e:  # truncated or foreign file: scipy raises ValueError, MatReadError, zlib.error...
        raise DataError(
            f"{path}: not a readable MATLAB file ({type(e).__name__}); expected SVHN's {path.name}, "
            "delete it and run `make data` again"
        ) from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: expected variables X (32 x 32 x 3 x N images) and y (N labels)")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(f"{path}: X has shape {x.shape} ({x.dtype}), expected 32 x 32 x 3 x N uint8 images")
    if x.shape[3] != len(y):
        raise DataError(f"{path}: {len(y)} labels, expected {x.shape[3]} (one per image)")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels {int(y.min())}..{int(y.max())}, expected SVHN's 1..10 (10 is the digit 0)")
    y = y.astype(np.int64) % 10  # torchvision's convention: label 10 is the digit 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(cfg: DatasetConfig) -> Arrays:
    root = Path(cfg.root)
    return (*_svhn_split(root / SVHN_FILES["train"]), *_svhn_split(root / SVHN_FILES["test"]))


# ----------------------------------------------------------------------------------------------
# Fixed stratified split of one labelled set (npz x, y / imagefolder with one tree).
def n_test_of(n: int, fraction: float) -> int:
    return math.ceil(fraction * n)


def split_seed() -> int:
    """The split's seed: fixed, so that a file always splits the same way (trial-independent)."""
    return int(seeding.seed_sequence(0, 0, 0, "dataset-test-split").generate_state(1)[0])


def stratified_split(y: np.ndarray, fraction: float, where: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    n = len(y)
    try:
        pool, test = train_test_split(np.arange(n), test_size=n_test_of(n, fraction), stratify=y, random_state=split_seed())
    except ValueError as e:
        raise DataError(
            f"{where}: cannot split {n} images stratified with dataset.test_fraction={fraction} ({e}); "
            "expected at least 2 images per class and a test set with room for every class"
        ) from None
    return np.sort(pool), np.sort(test)


def _check_labels(y_pool: np.ndarray, y_test: np.ndarray, where: str, test_where: str) -> None:
    k = int(y_pool.max()) + 1 if len(y_pool) else 0
    if len(y_pool) and y_pool.min() < 0:
        raise DataError(f"{where}: label {int(y_pool.min())}, expected integer labels 0..K-1")
    present = np.unique(y_pool)
    if len(present) != k:
        missing = sorted(set(range(k)) - set(present.tolist()))
        raise DataError(
            f"{where}: labels run to {k - 1} but class {missing[0]} has no image; expected labels 0..K-1 with every class present"
        )
    bad = y_test[(y_test < 0) | (y_test >= k)]
    if len(bad):
        raise DataError(
            f"{test_where}: class {int(bad[0])} is in the test set but not in the training pool; expected labels 0..{k - 1}"
        )


# ----------------------------------------------------------------------------------------------
# npz: x_pool, y_pool, x_test, y_test, or x, y with dataset.test_fraction.
NPZ_SPLIT = ("x_pool", "y_pool", "x_test", "y_test")


def _npz_path(cfg: DatasetConfig) -> Path:
    if not cfg.path:
        raise ConfigError("dataset.path: missing; expected the .npz file (x_pool, y_pool, x_test, y_test, or x, y)")
    return Path(cfg.path)


def _as_nchw(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataError(f"{path}: {key} is {x.dtype}, expected uint8 images (0..255)")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{path}: {key} has shape {x.shape}, expected N x H x W, N x H x W x C or N x C x H x W with C 1 or 3")
    if x.shape[2] != x.shape[3]:
        raise DataError(f"{path}: {key} images are {x.shape[2]} x {x.shape[3]}, expected square images")
    return np.ascontiguousarray(x)


def _as_labels(y: np.ndarray, n: int, path: Path, key: str, images: str) -> np.ndarray:
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise DataError(f"{path}: {key} has shape {y.shape}, expected N integer labels")
    y = y.reshape(-1)
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: {key} is {y.dtype}, expected integer labels 0..K-1")
    if len(y) != n:
        raise DataError(f"{path}: {key} has {len(y)} labels, expected {n} (one per image of {images})")
    return y.astype(np.int64)


def load_npz(cfg: DatasetConfig) -> Arrays:
    path = _npz_path(cfg)
    if not path.is_file():
        raise DataMissing(f"dataset.path: {path} not found; expected a .npz file with x_pool, y_pool, x_test, y_test (or x, y)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            wanted = NPZ_SPLIT if set(NPZ_SPLIT) <= keys or not {"x", "y"} <= keys else ("x", "y")
            missing = [k for k in wanted if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: key {missing[0]} is missing; expected x_pool, y_pool, x_test, y_test (or x, y "
                    f"with dataset.test_fraction), found {', '.join(sorted(keys)) or 'no arrays'}"
                )
            arrays = {k: z[k] for k in wanted}
    except DataError:
        raise
    except Exception as e:  # not a zip, truncated member, pickled objects
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); expected numpy.savez output") from None
    if "x" in arrays:
        if cfg.test_fraction is None:
            raise DataError(f"{path}: holds x, y only; expected dataset.test_fraction (e.g. 0.2) to split off a test set")
        x = _as_nchw(arrays["x"], path, "x")
        y = _as_labels(arrays["y"], len(x), path, "y", "x")
        _check_labels(y, y[:0], f"{path}: y", str(path))
        pool, test = stratified_split(y, cfg.test_fraction, str(path))
        return x[pool], y[pool], x[test], y[test]
    if cfg.test_fraction is not None:
        raise DataError(f"{path}: holds its own test set (x_test, y_test); expected dataset.test_fraction: null")
    px = _as_nchw(arrays["x_pool"], path, "x_pool")
    tx = _as_nchw(arrays["x_test"], path, "x_test")
    if tx.shape[1:] != px.shape[1:]:
        raise DataError(f"{path}: x_test images are {tx.shape[1:]}, expected the shape of x_pool's {px.shape[1:]}")
    py = _as_labels(arrays["y_pool"], len(px), path, "y_pool", "x_pool")
    ty = _as_labels(arrays["y_test"], len(tx), path, "y_test", "x_test")
    _check_labels(py, ty, f"{path}: y_pool", f"{path}: y_test")
    return px, py, tx, ty


def _npy_rows(z: zipfile.ZipFile, key: str) -> int:
    with z.open(f"{key}.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    return int(shape[0])


def npz_pool_size(cfg: DatasetConfig) -> int | None:
    """The pool size from the arrays' headers (no data read); None when the file cannot tell yet."""
    path = _npz_path(cfg)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "x_pool.npy" in names:
                return _npy_rows(z, "x_pool")
            if "x.npy" in names and cfg.test_fraction is not None:
                n = _npy_rows(z, "x")
                return n - n_test_of(n, cfg.test_fraction)
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return None  # missing or damaged: loading says exactly what is wrong, before anything is written
    return None


# ----------------------------------------------------------------------------------------------
# imagefolder: root/train/<class>/*, root/test/<class>/* (or one tree and dataset.test_fraction).
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
CACHE_DIR = ".al_cache"


def _image_extensions() -> set[str]:
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def _trees(cfg: DatasetConfig) -> tuple[Path, Path | None]:
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataMissing(
            f"dataset.root: {root} is not a directory; expected root/train/<class>/* and root/test/<class>/* "
            "(or root/<class>/* with dataset.test_fraction)"
        )
    train = root / "train" if (root / "train").is_dir() else root
    test = root / "test" if (root / "test").is_dir() else None
    if test is not None and cfg.test_fraction is not None:
        raise DataError(f"{test}: a test folder exists; expected dataset.test_fraction: null (or remove {test})")
    if test is None and cfg.test_fraction is None:
        raise DataError(f"{root}: no test folder; expected {root / 'test'}/<class>/* or dataset.test_fraction (e.g. 0.2)")
    return train, test


def _listing(tree: Path, exts: set[str]) -> dict[str, list[Path]]:
    """class name -> its image files, sorted; dot-files and non-image files are skipped."""
    classes = {}
    for d in sorted(p for p in tree.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in ("train", "test")):
        files = sorted(f for f in d.rglob("*") if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in exts)
        classes[d.name] = files
    return classes


def _classes(cfg: DatasetConfig) -> tuple[list[str], list[Path], np.ndarray, list[Path], np.ndarray]:
    train, test = _trees(cfg)
    exts = _image_extensions()
    tr = _listing(train, exts)
    if not tr:
        raise DataError(f"{train}: no class folders; expected {train}/<class>/<image files>")
    empty = [c for c, files in tr.items() if not files]
    if empty:
        raise DataError(f"{train / empty[0]}: no image files; expected at least one image per class")
    names = list(tr)
    te = _listing(test, exts) if test is not None else {}
    for c in te:
        if c not in tr:
            raise DataError(
                f"{test / c}: class {c!r} is in the test folder but not in {train}; expected test classes among {', '.join(names)}"
            )
    pool_files = [f for c in names for f in tr[c]]
    pool_y = np.array([i for i, c in enumerate(names) for _ in tr[c]], dtype=np.int64)
    test_files = [f for c in te for f in te[c]]
    test_y = np.array([names.index(c) for c in te for _ in te[c]], dtype=np.int64)
    if test is not None and not test_files:
        raise DataError(f"{test}: no images; expected {test}/<class>/<image files>")
    return names, pool_files, pool_y, test_files, test_y


def imagefolder_pool_size(cfg: DatasetConfig) -> int | None:
    try:
        _, pool_files, _, _, _ = _classes(cfg)
    except (DataError, OSError):
        return None  # loading reports it, with the file
    n = len(pool_files)
    return n - n_test_of(n, cfg.test_fraction) if cfg.test_fraction is not None else n


def _fingerprint(files: list[Path], root: Path, size: int) -> str:
    h = hashlib.sha256(f"imagefolder-v1 size={size}\n".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


IMAGE_MAX_PIXELS = 40_000_000  # per image file (8000 x 5000); every image is resized to dataset.size anyway


def _decode(files: list[Path], size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    images, gray = [], []
    for f in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)  # refused below, not decoded
                with Image.open(f) as im:
                    _check_pixels(f, im.size)
                    im.load()
                    mode = im.mode
                    im = im.convert("L" if mode in GRAY_MODES else "RGB").resize((size, size), Image.BILINEAR)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(f"{f}: too large to decode ({e}); expected images of at most {IMAGE_MAX_PIXELS:,} pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(
                f"{f}: cannot decode the image ({type(e).__name__}); expected an image file PIL reads "
                "(PNG, JPEG, TIFF, ...); delete or replace it"
            ) from None
        images.append(np.asarray(im, dtype=np.uint8))
        gray.append(mode in GRAY_MODES)
    if all(gray):
        return np.stack(images)[:, None]
    # Mixed or colour: every image as 3 channels (a grey image repeated).
    return np.stack([im if im.ndim == 3 else np.repeat(im[:, :, None], 3, axis=2) for im in images]).transpose(0, 3, 1, 2).copy()


def _check_pixels(f: Path, wh: tuple[int, int]) -> None:
    """DataError for an image whose header declares more than IMAGE_MAX_PIXELS pixels: read before
    any pixel is decoded, so a decompression bomb (a small file declaring a huge image) costs nothing."""
    w, h = wh
    if w * h > IMAGE_MAX_PIXELS:
        raise DataError(
            f"{f}: {w} x {h} = {w * h:,} pixels, too large to decode; expected images of at most "
            f"{IMAGE_MAX_PIXELS:,} pixels (they are resized to dataset.size): shrink or delete it"
        )


def load_imagefolder(cfg: DatasetConfig) -> Arrays:
    from al_core.io import atomic_write

    root = Path(cfg.root)
    names, pool_files, pool_y, test_files, test_y = _classes(cfg)
    files = pool_files + test_files
    key = _fingerprint(files, root, cfg.size)
    cache = root / CACHE_DIR / f"imagefolder-{key}.npy"
    try:
        x = np.load(cache, allow_pickle=False)
        if x.shape[0] != len(files) or x.shape[2:] != (cfg.size, cfg.size):
            x = None
    except (OSError, ValueError):
        x = None  # damaged cache (or none yet: FileNotFoundError): decode again
    if x is None:
        x = _decode(files, cfg.size)
        try:
            cache.parent.mkdir(exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, x, allow_pickle=False)
            atomic_write(cache, lambda f: f.write(buf.getvalue()))
            for old in cache.parent.glob("imagefolder-*.npy"):  # caches of the folder as it was
                if old != cache:
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only data folder: decode every time rather than fail
    px, tx = x[: len(pool_files)], x[len(pool_files) :]
    if cfg.test_fraction is not None:
        pool, test = stratified_split(pool_y, cfg.test_fraction, str(root))
        return px[pool], pool_y[pool], px[test], pool_y[test]
    return px, pool_y, tx, test_y


# ----------------------------------------------------------------------------------------------
def check_config(cfg: DatasetConfig) -> None:
    """The dataset keys' values, checked when the sweep is validated."""
    if cfg.test_fraction is not None and not 0 < cfg.test_fraction < 1:
        raise ConfigError(f"dataset.test_fraction: expected null or a fraction in (0, 1), got {cfg.test_fraction}")
    if cfg.pad is not None and cfg.pad < 0:
        raise ConfigError(f"dataset.pad: expected null or an integer >= 0, got {cfg.pad}")
    if cfg.size < 4:
        raise ConfigError(f"dataset.size: expected an image side >= 4 pixels, got {cfg.size}")
    if cfg.name == "npz":
        _npz_path(cfg)
    if cfg.name not in ("npz", "imagefolder") and cfg.test_fraction is not None:
        raise ConfigError(f"dataset.test_fraction: {cfg.name} has a fixed test set; expected null")


def finish_spec(spec: DatasetSpec, arrays: Arrays, cfg: DatasetConfig | None) -> DatasetSpec:
    """The spec of the data as loaded: classes, channels and size from the files, pad and flip from the sweep."""
    px, py, tx, ty = arrays
    changes = dict(pool_size=len(px), test_size=len(tx), channels=int(px.shape[1]), size=int(px.shape[2]))
    if spec.n_classes == 0:
        changes["n_classes"] = int(py.max()) + 1
    if spec.pad < 0:
        changes["pad"] = max(1, int(px.shape[2]) // 8)
    for key in ("pad", "flip"):  # the sweep's dataset.pad / dataset.flip over the dataset's own
        if cfg is not None and getattr(cfg, key) is not None:
            changes[key] = getattr(cfg, key)
    return dataclasses.replace(spec, **changes)


def download(name: str, root: str | Path) -> Path:
    """Download with torchvision (checksums verified) into `root`, in the layout the loaders read;
    for a node with internet. Returns the folder the files are in."""
    import torchvision

    Path(root).mkdir(parents=True, exist_ok=True)
    if name == "svhn":
        for split in ("train", "test"):
            torchvision.datasets.SVHN(root=str(root), split=split, download=True)
        return Path(root)
    for train in (True, False):
        getattr(torchvision.datasets, DOWNLOADS[name])(root=str(root), train=train, download=True)
    return Path(root) / (CIFAR_DIRS[name] if name in CIFAR_DIRS else f"{IDX_DIRS[name]}/raw")


# What `make data` downloads: dataset name -> its torchvision class.
DOWNLOADS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "fashion_mnist": "FashionMNIST", "mnist": "MNIST", "svhn": "SVHN"}


def _fixed(loader):
    return lambda root: loader(DatasetConfig(root=str(root)))


# npz / imagefolder: pad -1 means size // 8 of the images as loaded; n_classes 0 means from the labels.
for _name, _flip in (("fashion_mnist", True), ("mnist", False)):  # a mirrored digit is no digit
    _load = lambda c, _name=_name: load_idx(_name, c)  # noqa: E731
    register(DatasetSpec(_name, 10, 1, 28, 60000, 10000, pad=2, flip=_flip, load=_fixed(_load), load_cfg=_load))
register(DatasetSpec("svhn", 10, 3, 32, 73257, 26032, pad=2, flip=False, load=_fixed(load_svhn), load_cfg=load_svhn))
for _name, _load, _pool_size in (("npz", load_npz, npz_pool_size), ("imagefolder", load_imagefolder, imagefolder_pool_size)):
    register(DatasetSpec(_name, 0, 0, 0, 0, 0, pad=-1, flip=False, load=_fixed(_load), load_cfg=_load, pool_size_of=_pool_size))
