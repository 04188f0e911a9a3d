"""Datasets on disk (CIFAR format written here), bundled digits, and the on-device batch path."""

import pickle

import numpy as np
import pytest
import torch

from al_core.data import DATASETS, DataError, load
from al_core.train import epoch_plan


def write_cifar10(root, per_batch=6, seed=0):
    g = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    everything = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = g.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = list(g.integers(0, 10, size=per_batch))
        with open(base / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        everything[name] = (data, labels)
    return everything


def test_reads_cifar10_layout_written_by_torchvision(tmp_path):
    written = write_cifar10(tmp_path)
    px, py, tx, ty = DATASETS.get("cifar10").load(tmp_path)
    assert px.shape == (30, 3, 32, 32) and px.dtype == np.uint8 and tx.shape == (6, 3, 32, 32)
    d1, l1 = written["data_batch_1"]
    # row-major 3072 = 1024 red, 1024 green, 1024 blue
    np.testing.assert_array_equal(px[0, 1].ravel(), d1[0, 1024:2048])
    assert list(py[:6]) == l1 and list(ty) == written["test_batch"][1]


def test_reads_cifar100_fine_labels(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for name, n in (("train", 8), ("test", 4)):
        with open(base / name, "wb") as f:
            pickle.dump({b"data": np.zeros((n, 3072), np.uint8), b"fine_labels": list(range(n)), b"coarse_labels": [0] * n}, f)
    px, py, tx, ty = DATASETS.get("cifar100").load(tmp_path)
    assert px.shape == (8, 3, 32, 32) and list(ty) == [0, 1, 2, 3]


def test_missing_cifar_says_make_data(tmp_path):
    with pytest.raises(DataError, match="make data"):
        DATASETS.get("cifar10").load(tmp_path)


def test_truncated_cifar_batch_is_a_clear_error(tmp_path):
    write_cifar10(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3"):
        DATASETS.get("cifar10").load(tmp_path)


def test_digits_split_is_fixed_and_stratified():
    a = DATASETS.get("digits").load(None)
    b = DATASETS.get("digits").load(None)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    px, py, tx, ty = a
    assert px.shape == (1347, 1, 8, 8) and tx.shape == (450, 1, 8, 8) and px.max() == 255
    assert np.bincount(ty).min() >= 43  # every class in the test set in proportion (174 eights -> 43)


def test_normalisation_uses_pool_statistics():
    data = load("synthetic", "unused", torch.device("cpu"))
    x = data.normalise(data.pool_x)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-3
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_crop_and_flip_on_device():
    data = load("synthetic", "unused", torch.device("cpu"))
    idx = torch.tensor([3, 7])
    pad = data.spec.pad
    centred = torch.full((2, 2), pad)
    plain = data.normalise(data.pool_x[idx])
    assert torch.equal(data.train_batch(idx, centred, torch.tensor([False, False])), plain)
    flipped = data.train_batch(idx, centred, torch.tensor([True, False]))
    assert torch.equal(flipped[0], plain[0].flip(2)) and torch.equal(flipped[1], plain[1])
    # shifted by the whole pad: the first `pad` rows are the zero padding (normalised zeros)
    shifted = data.train_batch(idx, torch.tensor([[0, pad], [pad, pad]]), None)
    zero = data.normalise(torch.zeros(1, data.spec.channels, 1, 1, dtype=torch.uint8))
    assert torch.allclose(shifted[0, :, :pad, :], zero[0].expand(data.spec.channels, pad, data.spec.size))
    assert torch.equal(shifted[0, :, pad:, :], plain[0, :, :-pad, :])


def test_epoch_plan_shuffles_every_epoch_and_is_reproducible():
    data = load("synthetic", "unused", torch.device("cpu"))
    labelled = torch.arange(50, 150)
    p0, p0b, p1 = (epoch_plan(data, labelled, 0, 1, e, 32) for e in (0, 0, 1))
    assert torch.equal(p0.order, p0b.order) and torch.equal(p0.shifts, p0b.shifts)
    assert not torch.equal(p0.order, p1.order)
    assert sorted(p0.order.tolist()) == list(range(50, 150))
    assert p0.n_steps == 3  # 100 = 32 + 32 + 36: a remainder of 4 joins the last full batch
    assert [len(p0.batch(i)[0]) for i in range(3)] == [32, 32, 36]

    def sizes(n):
        plan = epoch_plan(data, torch.arange(n), 0, 1, 0, 32)
        return [len(plan.batch(i)[0]) for i in range(plan.n_steps)]

    assert sizes(80) == [32, 32, 16]  # half a batch or more stays a batch of its own
    assert sizes(33) == [33] and sizes(20) == [20] and sizes(1) == []


def test_cpu_fast_path_equals_the_generic_gather():
    data = load("synthetic", "unused", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, data.n_pool, (64,), generator=g)
    shifts = torch.randint(0, 2 * data.spec.pad + 1, (64, 2), generator=g)
    flips = torch.rand(64, generator=g) < 0.5
    ar = torch.arange(data.spec.size)
    rows = (shifts[:, 0:1] + ar)[:, None, :, None]
    cols = (shifts[:, 1:2] + ar)[:, None, None, :]
    chan = torch.arange(data.spec.channels)[None, :, None, None]
    generic = data.padded[idx[:, None, None, None], chan, rows, cols]
    generic = torch.where(flips[:, None, None, None], generic.flip(3), generic)
    assert torch.equal(data.train_batch(idx, shifts, flips), data.normalise(generic))
