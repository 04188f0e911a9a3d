"""Datasets as uint8 tensors on the training device, and the on-device training batch.

A batch is gathered by index from the pool, cropped from a zero-padded copy and flipped on the
device, then normalised there; scoring and evaluation read the un-augmented images.
No DataLoader and no PIL in the hot path.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from al_core.registry import Registry


class DataError(RuntimeError):
    """A dataset that is missing or damaged on disk; the message says what to do."""


class DataMissing(DataError):
    """The dataset's files are not on this node (exit 78 in a job: this node cannot serve the run)."""


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # pool_x, pool_y, test_x, test_y (NCHW uint8)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    n_classes: int
    channels: int
    size: int  # images are size x size
    pool_size: int  # training pool (labelled + unlabelled) of the complete dataset
    test_size: int
    pad: int  # random-crop padding in pixels (0: no crop)
    flip: bool  # random horizontal flip (digits are not flipped: a mirrored 2 is no 2)
    load: Callable[[Path], Arrays]
    load_cfg: Callable[..., Arrays] | None = None  # file datasets: reads the whole DatasetConfig
    pool_size_of: Callable[..., int | None] | None = None  # pool size from the files' headers (None: unknown yet)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


# ----------------------------------------------------------------------------------------------
# CIFAR from the directory layout torchvision's download writes.
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated or foreign file
        raise DataError(f"{path}: not a readable CIFAR batch ({type(e).__name__}); delete it and run `make data` again") from None


def _cifar_arrays(files: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        d = _unpickle(f)
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_files(name: str, root: Path) -> tuple[list[Path], list[Path]]:
    base = Path(root) / CIFAR_DIRS[name]
    if name == "cifar10":
        return [base / f"data_batch_{i}" for i in range(1, 6)], [base / "test_batch"]
    return [base / "train"], [base / "test"]


# Files each on-disk dataset needs under dataset.root: checked on the login node before submitting.
REQUIRED_FILES: dict[str, Callable[[Path], list[Path]]] = {
    name: (lambda root, name=name: sum(_cifar_files(name, root), [])) for name in CIFAR_DIRS
}


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
    pool_x, pool_y = _cifar_arrays(train, key)
    test_x, test_y = _cifar_arrays(test, key)
    return pool_x, pool_y, test_x, test_y


_register(DatasetSpec("cifar10", 10, 3, 32, 50000, 10000, pad=4, flip=True, load=lambda r: _load_cifar("cifar10", r)))
_register(DatasetSpec("cifar100", 100, 3, 32, 50000, 10000, pad=4, flip=True, load=lambda r: _load_cifar("cifar100", r)))


def download(name: str, root: str | Path) -> Path:
    """Download CIFAR with torchvision (checksums verified) into `root`; for a node with internet."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    Path(root).mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(root=str(root), train=train, download=True)
    return Path(root) / CIFAR_DIRS[name]


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


_register(DatasetSpec("digits", 10, 1, 8, 1797 - DIGITS_TEST, DIGITS_TEST, pad=1, flip=False, load=_load_digits))


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


_register(DatasetSpec("synthetic", 10, 3, SYNTH_SIZE, SYNTH_POOL, SYNTH_TEST, pad=2, flip=True, load=_load_synthetic))


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


_register(DatasetSpec("synthetic_cifar", 10, 3, 32, 50000, 10000, pad=4, flip=True, load=_load_synthetic_cifar))

# Fashion-MNIST, MNIST, SVHN, npz and imagefolder register themselves (files on disk).
from al_core import datasets_real  # noqa: E402,F401


# ----------------------------------------------------------------------------------------------
@dataclass
class DeviceData:
    """A dataset resident on the training device."""

    spec: DatasetSpec
    pool_x: torch.Tensor  # uint8 N x C x H x W
    pool_y: torch.Tensor  # int64 N
    test_x: torch.Tensor
    test_y: torch.Tensor
    scale: torch.Tensor  # 1 x C x 1 x 1: 1 / std of the pool's channels (0..255 units)
    shift: torch.Tensor  # 1 x C x 1 x 1: mean / std
    padded: torch.Tensor | None  # pool zero-padded by spec.pad, for crops without a per-batch pad
    _windows: np.ndarray | None = None  # CPU only: a strided view of every crop of `padded`

    @property
    def n_classes(self) -> int:
        return self.spec.n_classes

    @property
    def n_pool(self) -> int:
        return int(self.pool_x.shape[0])

    def normalise(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 normalised by the pool's channel mean and std."""
        return x_uint8.float() * self.scale - self.shift

    def train_batch(self, idx: torch.Tensor, shifts: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
        """Augmented, normalised images of pool indices `idx` (all on the device).

        shifts: B x 2 crop offsets in [0, 2 * pad]; flips: B bools. On CUDA one gather kernel does
        crop and flip together; on a CPU numpy copies whole rows out of a strided window view,
        which is an order of magnitude faster than torch's per-element CPU index kernel.
        """
        if self.padded is None or shifts is None:
            x = self.pool_x[idx]
            if flips is not None:
                x = torch.where(flips[:, None, None, None], x.flip(3), x)
        elif idx.is_cuda:
            s = self.spec.size
            ar = torch.arange(s, device=idx.device)
            rows = (shifts[:, 0:1] + ar)[:, None, :, None]  # B x 1 x S x 1
            cols = shifts[:, 1:2] + (ar if flips is None else torch.where(flips[:, None], s - 1 - ar, ar))
            chan = torch.arange(self.spec.channels, device=idx.device)[None, :, None, None]
            x = self.padded[idx[:, None, None, None], chan, rows, cols[:, None, None, :]]
        else:
            x = self._cpu_crop_flip(idx, shifts, flips)
        return self.normalise(x)

    def _cpu_crop_flip(self, idx: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
        if self._windows is None:
            s = self.spec.size
            # N x C x (2p+1) x (2p+1) x S x S view of every crop of every image: no copy.
            self._windows = np.lib.stride_tricks.sliding_window_view(self.padded.numpy(), (s, s), axis=(2, 3))
        sh = shifts.numpy()
        x = self._windows[idx.numpy(), :, sh[:, 0], sh[:, 1]]  # B x C x S x S, a copy
        if flips is not None:
            f = flips.numpy()
            x[f] = x[f, :, :, ::-1]
        return torch.from_numpy(x)


def load(name: str, root: str | Path, device: torch.device, options=None) -> DeviceData:
    """`options`: the sweep's DatasetConfig (path, size, test_fraction, pad, flip), for file datasets."""
    from al_core.datasets_real import finish_spec

    spec = DATASETS.get(name)
    if spec.load_cfg is not None:
        from al_core.config import DatasetConfig

        arrays = spec.load_cfg(options if options is not None else DatasetConfig(name=name, root=str(root)))
    else:
        arrays = spec.load(Path(root))
    pool_x, pool_y, test_x, test_y = arrays
    if not (len(pool_x) == len(pool_y) and len(test_x) == len(test_y) and len(test_x) > 0):
        raise DataError(f"dataset {name}: images and labels do not match in number; the files are damaged")
    spec = finish_spec(spec, arrays, options)
    # Normalisation statistics of the training pool, per channel, computed in float64 once.
    mean = pool_x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = pool_x.astype(np.float32).std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    shape = (1, spec.channels, 1, 1)
    # (x / 255 - mean / 255) / (std / 255) == x / std - mean / std, with mean and std in 0..255 units.
    scale = torch.tensor(1.0 / std, dtype=torch.float32).reshape(shape)
    shift = torch.tensor(mean / std, dtype=torch.float32).reshape(shape)
    px = torch.from_numpy(np.ascontiguousarray(pool_x)).to(device)
    padded = F.pad(px, (spec.pad,) * 4) if spec.pad > 0 else None
    return DeviceData(
        spec=spec,
        pool_x=px,
        pool_y=torch.from_numpy(pool_y).to(device),
        test_x=torch.from_numpy(np.ascontiguousarray(test_x)).to(device),
        test_y=torch.from_numpy(test_y).to(device),
        scale=scale.to(device),
        shift=shift.to(device),
        padded=padded,
    )
