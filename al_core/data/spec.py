"""What a dataset is to the rest of al_core (torch-free): the sweep's `dataset:` section, a dataset's
spec in the registry, its arrays, and the files it needs on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from al_core.registry import DATASETS

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # pool_x, pool_y, test_x, test_y (NCHW uint8)

# Files each on-disk dataset needs under dataset.root: checked on the login node before submitting.
REQUIRED_FILES: dict[str, Callable[[Path], list[Path]]] = {}


@dataclass(frozen=True)
class DatasetConfig:
    """The sweep's `dataset:` section."""

    name: str = "cifar10"  # cifar10 | cifar100 | digits | synthetic | fashion_mnist | mnist | svhn | npz | imagefolder
    root: str = "data"  # directory holding torchvision's layouts (make data writes them) / imagefolder's tree
    path: Optional[str] = None  # npz: the file (x_pool, y_pool, x_test, y_test, or x, y with test_fraction)
    size: int = 32  # imagefolder: images resized to size x size pixels
    test_fraction: Optional[float] = None  # npz x, y / imagefolder one tree: stratified, seeded test split
    pad: Optional[int] = None  # random-crop padding in pixels (null: the dataset's own)
    flip: Optional[bool] = None  # random horizontal flip (null: the dataset's own)
    # long-tailed pool: {ratio: 100} (or 100), head / tail class ratio, exponential profile (null: as is)
    imbalance: Optional[dict] = None


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


def register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)
