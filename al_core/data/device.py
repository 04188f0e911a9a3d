"""A dataset resident on the training device: the uint8 pool and test set, normalisation and
on-device augmentation (`DeviceData`), built by `load` from a registered dataset's arrays.

Apart from al_core.data (the torch-free file readers and the dataset registry) so that a sweep
validates without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from al_core.data.imbalance import keep as long_tail, ratio_of
from al_core.data.files import finish_spec
from al_core.data.spec import DatasetConfig, DatasetSpec
from al_core.errors import DataError
from al_core.registry import DATASETS


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

    def batches(self, images, n: int, batch_size: int, model, check_stop=None):
        """Scoring inputs: `n` uint8 images (`images(slice)` gives a batch of them) normalised, batch by
        batch, in `model`'s memory format; `check_stop()`, before each batch, raises to abandon the pass."""
        channels_last = self.pool_x.is_cuda and next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
        for start in range(0, n, batch_size):
            if check_stop is not None:
                check_stop()
            x = self.normalise(images(slice(start, start + batch_size)))
            yield x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def train_batch(
        self, idx: torch.Tensor, shifts: torch.Tensor | None, flips: torch.Tensor | None, transform=None
    ) -> torch.Tensor:
        """Augmented, normalised images of pool indices `idx` (all on the device); `transform`, when
        given, maps the cropped and flipped uint8 batch before normalisation (train.augment: randaugment).

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
        return self.normalise(x if transform is None else transform(x))

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
    spec = DATASETS.get(name)
    if spec.load_cfg is not None:
        arrays = spec.load_cfg(options if options is not None else DatasetConfig(name=name, root=str(root)))
    else:
        arrays = spec.load(Path(root))
    pool_x, pool_y, test_x, test_y = arrays
    if not (len(pool_x) == len(pool_y) and len(test_x) == len(test_y) and len(test_x) > 0):
        raise DataError(f"dataset {name}: images and labels do not match in number; the files are damaged")
    ratio = ratio_of(getattr(options, "imbalance", None))
    if ratio is not None:  # dataset.imbalance: the long-tailed pool; the test set stays as it is
        kept = long_tail(pool_y, ratio)
        pool_x, pool_y = pool_x[kept], np.asarray(pool_y)[kept]
        arrays = (pool_x, pool_y, test_x, test_y)
    return from_arrays(finish_spec(spec, arrays, options), arrays, device)


def from_arrays(spec: DatasetSpec, arrays, device: torch.device) -> DeviceData:
    """`DeviceData` of uint8 NCHW arrays (pool_x, pool_y, test_x, test_y), normalised by the pool's statistics."""
    pool_x, pool_y, test_x, test_y = arrays
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
        pool_y=torch.from_numpy(np.asarray(pool_y, dtype=np.int64)).to(device),
        test_x=torch.from_numpy(np.ascontiguousarray(test_x)).to(device),
        test_y=torch.from_numpy(np.asarray(test_y, dtype=np.int64)).to(device),
        scale=scale.to(device),
        shift=shift.to(device),
        padded=padded,
    )
