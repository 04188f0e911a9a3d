"""The reference path: how the original LL4AL code feeds, trains and scores a CIFAR ResNet.

A torchvision-style CIFAR dataset (HWC uint8 array, a PIL image made per item), PIL transforms, a
DataLoader, fp32 NCHW, `.to(device)` per batch, two SGD optimizers (backbone and loss module).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, SequentialSampler, SubsetRandomSampler
from torchvision.datasets import VisionDataset

from al_core.models import LossNet, ResNet, loss_pred_loss

# The CIFAR-10 channel statistics LL4AL's transforms use (0..1 units).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


def train_transform() -> T.Compose:
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])


def test_transform() -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])


class InMemoryCIFAR(VisionDataset):
    """torchvision's CIFAR10 without the files: `data` is N x 32 x 32 x 3 uint8, a PIL image per item.

    `__getitem__` is torchvision's, so the per-image PIL cost (fromarray + transforms) is the real one.
    """

    def __init__(self, data: np.ndarray, targets: list[int], transform=None) -> None:
        super().__init__(root=None, transform=transform)
        self.data = data
        self.targets = targets

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img, target = self.data[index], self.targets[index]
        img = Image.fromarray(img)
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def train_loader(dataset: InMemoryCIFAR, batch_size: int, workers: int, pin_memory: bool, seed: int = 0) -> DataLoader:
    """LL4AL's training loader: a random sampler over the labelled indices (here: all of them)."""
    g = torch.Generator().manual_seed(seed)
    sampler = SubsetRandomSampler(range(len(dataset)), generator=g)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory)


def score_loader(dataset: InMemoryCIFAR, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    """LL4AL's unlabelled loader: the pool in order, test transform, the training batch size."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=SequentialSampler(dataset), num_workers=workers, pin_memory=pin_memory
    )


def optimizers(model: ResNet, lossnet: LossNet, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
    """LL4AL's two optimizers, built as its main.py builds them (no fused kernels asked for)."""
    return (
        torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay),
        torch.optim.SGD(lossnet.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay),
    )


def train_epoch(
    model: ResNet, lossnet: LossNet, opts, loader: DataLoader, device: torch.device, margin: float = 1.0, weight: float = 1.0
) -> int:
    """One pass of LL4AL's `train_epoch` (before the detach epoch); returns the images seen."""
    opt_backbone, opt_module = opts
    criterion = nn.CrossEntropyLoss(reduction="none")
    model.train()
    lossnet.train()
    seen = 0
    for inputs, labels in loader:
        inputs = inputs.to(device)
        labels = labels.to(device)
        opt_backbone.zero_grad()
        opt_module.zero_grad()
        scores, features = model(inputs)
        target_loss = criterion(scores, labels)
        pred_loss = lossnet(features).view(-1)
        backbone_loss = torch.sum(target_loss) / target_loss.size(0)
        module_loss = loss_pred_loss(pred_loss, target_loss, margin)
        loss = backbone_loss + weight * module_loss
        loss.backward()
        opt_backbone.step()
        opt_module.step()
        seen += labels.shape[0]
    return seen


@torch.no_grad()
def score(model: ResNet, lossnet: LossNet, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """LL4AL's `get_uncertainty` (predicted losses), plus the softmax the entropy family reads."""
    model.eval()
    lossnet.eval()
    preds, probs = [], []
    for inputs, _ in loader:
        inputs = inputs.to(device)
        logits, features = model(inputs)
        preds.append(lossnet(features).view(-1))
        probs.append(torch.softmax(logits, dim=1))
    return torch.cat(preds).cpu(), torch.cat(probs).cpu()


def data_epoch(loader: DataLoader, device: torch.device) -> int:
    """The data path alone: every batch through PIL and the DataLoader, then `.to(device)`."""
    seen = 0
    last = None
    for inputs, labels in loader:
        last = inputs.to(device)
        labels.to(device)
        seen += labels.shape[0]
    del last
    return seen
