"""`dataset.imbalance`: a long-tailed pool with an exponential profile (torch-free).

The profile of the CIFAR-LT benchmarks (Cui et al., CVPR 2019; Cao et al., NeurIPS 2019), which
Lüth et al. (NeurIPS 2023) use for class-imbalanced active learning: class c of C keeps
n_c = floor(n_head * ratio ** (-c / (C - 1))) images, class 0 the most (n_head: the smallest class
count of the balanced pool, so every class can give its share) and class C - 1 ratio times fewer.
Which images a class keeps is drawn once from a fixed seed, the same for every trial, model and
strategy: the long-tailed pool is one dataset. The test set stays balanced. Written here because
neither torchvision nor scikit-learn builds such a profile (imbalanced-learn's samplers rebalance;
they do not make a tail).
"""

from __future__ import annotations

import math

import numpy as np

from al_core import seeding
from al_core.errors import ConfigError


PROFILES = ("exponential",)


def ratio_of(value) -> float | None:
    """`dataset.imbalance` checked: null (a balanced pool), a ratio >= 1 of the head class's count to
    the tail's, or {ratio: R, profile: exponential}; returns R (None for null)."""
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) - {"ratio", "profile"} or "ratio" not in value or value.get("profile", "exponential") not in PROFILES:
            raise ConfigError(f"dataset.imbalance: expected {{ratio: R, profile: exponential}} or a ratio R >= 1, got {value!r}")
        ratio = value["ratio"]
    else:
        ratio = value
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio < 1:
        raise ConfigError(
            f"dataset.imbalance: expected null or a ratio >= 1 (e.g. {{ratio: 100}}: the rarest class 100x fewer), got {value!r}"
        )
    return float(ratio)


def counts(class_counts: np.ndarray, ratio: float) -> np.ndarray:
    """Images kept per class under the exponential profile (class 0 the head)."""
    n_classes = len(class_counts)
    head = int(np.min(class_counts))
    if n_classes < 2:
        return np.array([head])
    c = np.arange(n_classes)
    return np.maximum(1, np.floor(head * float(ratio) ** (-c / (n_classes - 1)) + 1e-9)).astype(np.int64)


def keep(pool_y: np.ndarray, ratio: float) -> np.ndarray:
    """Sorted pool positions of the long-tailed pool."""
    pool_y = np.asarray(pool_y)
    n_classes = int(pool_y.max()) + 1
    want = counts(np.bincount(pool_y, minlength=n_classes), ratio)
    rng = seeding.rng(0, 0, 0, "imbalance")
    kept = [rng.choice(np.flatnonzero(pool_y == c), size=int(want[c]), replace=False) for c in range(n_classes)]
    return np.sort(np.concatenate(kept))
