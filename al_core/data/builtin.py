"""The built-in datasets: CIFAR-10/100 from torchvision's layout, scikit-learn's digits and two
synthetic sets (numpy arrays, no torch)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np

from al_core.data.spec import REQUIRED_FILES, Arrays, DatasetSpec, register
from al_core.errors import DataError, DataMissing

_log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# CIFAR from the directory layout torchvision's download writes.
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


# What the published batches (Python 2 pickles of numpy arrays, and of numpy scalars in files
# written by numpy itself) need, and nothing else: a crafted batch naming any other callable
# (os.system, subprocess, builtins.eval, ...) is refused before it is called. Python's pickle has
# no restricted mode and torchvision reads these files with plain pickle.load, hence this list.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """pickle.Unpickler that builds only numpy arrays, numpy scalars and plain containers."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _published_md5(path: Path) -> str | None:
    """torchvision's checksum of the published file of this name (None: not a published name)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    for name, md5 in CIFAR10.train_list + CIFAR10.test_list + CIFAR100.train_list + CIFAR100.test_list:
        if name == path.name and path.parent.name in CIFAR_DIRS.values():
            return md5
    return None


def _unpickle(path: Path) -> dict:
    """One CIFAR batch: checked against torchvision's checksum of the published file, then read by
    the restricted unpickler either way (a copy that is not the published file, e.g. a subset or a
    test's file, runs no code either)."""
    from torchvision.datasets.utils import check_integrity

    md5 = _published_md5(path)
    if md5 is not None and not check_integrity(str(path), md5) and path.is_file():
        _log.info("%s is not the published file (its md5 differs from torchvision's); reading it as a CIFAR batch", path)
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated, foreign or crafted file
        why = f": {e}" if isinstance(e, pickle.UnpicklingError) else f" ({type(e).__name__})"
        raise DataError(f"{path}: not a readable CIFAR batch{why}; delete it and run `make data` again") from None
    if not isinstance(d, dict) or not isinstance(d.get(b"data"), np.ndarray) or d[b"data"].dtype == object:
        raise DataError(
            f"{path}: not a CIFAR batch (expected a dict holding a numeric b'data' array); delete it and run `make data` again"
        )
    return d


def _cifar_arrays(files: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        d = _unpickle(f)
        try:
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[label_key], dtype=np.int64).reshape(-1))
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(
                f"{f}: not a CIFAR batch ({type(e).__name__}: {e}; expected b'data' of 3072 bytes per image and "
                f"{label_key!r}); delete it and run `make data` again"
            ) from None
        if len(xs[-1]) != len(ys[-1]):
            raise DataError(f"{f}: {len(xs[-1])} images but {len(ys[-1])} labels; delete it and run `make data` again")
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_files(name: str, root: Path) -> tuple[list[Path], list[Path]]:
    base = Path(root) / CIFAR_DIRS[name]
    if name == "cifar10":
        return [base / f"data_batch_{i}" for i in range(1, 6)], [base / "test_batch"]
    return [base / "train"], [base / "test"]


# Files each on-disk dataset needs under dataset.root: checked on the login node before submitting.
REQUIRED_FILES.update({name: (lambda root, name=name: sum(_cifar_files(name, root), [])) for name in CIFAR_DIRS})


def missing_files(name: str, root: str | Path) -> list[Path]:
    """The files dataset `name` needs under `root` that are not there (empty for embedded datasets)."""
    files = REQUIRED_FILES.get(name)
    present = lambda p: p.is_file() or p.with_name(p.name + ".gz").is_file()  # noqa: E731  (idx files may be gzipped)
    return [] if files is None else [p for p in files(Path(root)) if not present(p)]


def _load_cifar(name: str, root: Path) -> Arrays:
    train, test = _cifar_files(name, root)
    key = b"labels" if name == "cifar10" else b"fine_labels"
    missing = [str(p) for p in train + test if not p.is_file()]
    if missing:
        raise DataMissing(
            f"dataset {name} not found: {missing[0]} is missing; run `make data` on a node with internet "
            f"(it downloads into dataset.root={root}) or point dataset.root at an existing copy"
        )
    return (*_cifar_arrays(train, key), *_cifar_arrays(test, key))


register(DatasetSpec("cifar10", 10, 3, 32, 50000, 10000, pad=4, flip=True, load=lambda r: _load_cifar("cifar10", r)))
register(DatasetSpec("cifar100", 100, 3, 32, 50000, 10000, pad=4, flip=True, load=lambda r: _load_cifar("cifar100", r)))


# ----------------------------------------------------------------------------------------------
# digits: scikit-learn's bundled 8x8 handwritten digits, no download. Fixed stratified split.
DIGITS_TEST = 450


def _load_digits(root: Path) -> Arrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255, 1 channel
    y = d.target.astype(np.int64)
    px, tx, py, ty = train_test_split(x, y, test_size=DIGITS_TEST, stratify=y, random_state=0)
    return px, py, tx, ty


register(DatasetSpec("digits", 10, 1, 8, 1797 - DIGITS_TEST, DIGITS_TEST, pad=1, flip=False, load=_load_digits))


# ----------------------------------------------------------------------------------------------
# synthetic: tiny, seeded, learnable but not trivial; for tests.
SYNTH_POOL, SYNTH_TEST, SYNTH_SIZE = 1200, 400, 16


def _load_synthetic(root: Path) -> Arrays:
    g = np.random.default_rng(12345)
    k, s = 10, SYNTH_SIZE
    coarse = g.uniform(0, 255, size=(k, 3, 4, 4))
    protos = coarse.repeat(s // 4, axis=2).repeat(s // 4, axis=3)  # blocky class prototypes
    n = SYNTH_POOL + SYNTH_TEST
    y = np.arange(n) % k
    g.shuffle(y)
    x = 0.5 * protos[y] + 64 + g.normal(0, 55, size=(n, 3, s, s))
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x[:SYNTH_POOL], y[:SYNTH_POOL].astype(np.int64), x[SYNTH_POOL:], y[SYNTH_POOL:].astype(np.int64)


register(DatasetSpec("synthetic", 10, 3, SYNTH_SIZE, SYNTH_POOL, SYNTH_TEST, pad=2, flip=True, load=_load_synthetic))


def _load_synthetic_cifar(root: Path) -> Arrays:
    """CIFAR-10's shapes (50,000 + 10,000 images, 3 x 32 x 32, 10 classes) without a download:
    for timing a study's runs on a GPU node (make gpu-check). Learnable, not meaningful."""
    g = np.random.default_rng(54321)
    k, s, n_pool, n_test = 10, 32, 50000, 10000
    protos = g.uniform(0, 255, size=(k, 3, 4, 4)).repeat(s // 4, axis=2).repeat(s // 4, axis=3).astype(np.float32)
    y = np.arange(n_pool + n_test) % k
    g.shuffle(y)
    noise = g.integers(0, 128, size=(n_pool + n_test, 3, s, s), dtype=np.uint8)
    x = (0.5 * protos[y]).astype(np.uint8) + noise  # at most 127 + 127: no overflow
    return x[:n_pool], y[:n_pool].astype(np.int64), x[n_pool:], y[n_pool:].astype(np.int64)


register(DatasetSpec("synthetic_cifar", 10, 3, 32, 50000, 10000, pad=4, flip=True, load=_load_synthetic_cifar))
