"""Datasets: everything "add a dataset" touches lives in this folder.

- `spec`: the sweep's `dataset:` section, a dataset's spec, its arrays and required files (no torch);
- `builtin`: CIFAR-10/100 (torchvision's layout), digits, the synthetic sets;
- `files`: Fashion-MNIST, MNIST, SVHN, the researcher's `npz` and `imagefolder`;
- `device`: the arrays on the training device, batches gathered, cropped, flipped and normalised
  there (torch; no DataLoader, no PIL in the hot path);
- `download`: `make data` (torchvision's downloads, checksums verified).

`from al_core.data import DATASETS, DeviceData, load` works as before (DeviceData and load are
imported on first use, so a login node's sweep never imports torch).
"""

from __future__ import annotations

from al_core.data import files, imbalance
from al_core.data.builtin import CIFAR_DIRS, missing_files
from al_core.data.spec import REQUIRED_FILES, Arrays, DatasetConfig, DatasetSpec
from al_core.errors import DataError, DataMissing
from al_core.registry import DATASETS

__all__ = ["CIFAR_DIRS", "DATASETS", "REQUIRED_FILES", "Arrays", "DataError", "DataMissing", "DatasetConfig", "DatasetSpec"]
__all__ += ["missing_files", "pool_size"]  # al_core.data.download is the module `make data` runs


def pool_size(ds: DatasetConfig) -> int | None:
    """The pool size of the sweep's dataset, its keys checked; None if the files must tell."""
    files.check_config(ds)
    if imbalance.ratio_of(ds.imbalance) is not None:
        return None  # the long tail's size depends on the class counts: the run checks it
    spec = DATASETS.get(ds.name)
    return spec.pool_size_of(ds) if spec.pool_size_of is not None else spec.pool_size


def __getattr__(name: str):
    """`DeviceData` and `load` live in al_core.data.device (torch); imported from here on first use."""
    if name in ("DeviceData", "load"):
        from al_core.data import device

        return getattr(device, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
