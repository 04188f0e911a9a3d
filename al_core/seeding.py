"""Every random stream of a run, derived from (trial, cycle, epoch, purpose).

No RNG state is ever saved: a resumed run recomputes the same streams from the same four values,
and two runs that share a trial share every stream that does not depend on their model/strategy.
"""

from __future__ import annotations

import zlib

import numpy as np

# Purposes are hashed with crc32 (stable across processes and Python versions, unlike hash()).
ROOT = 20190617  # arbitrary fixed root of all streams


def seed_sequence(trial: int, cycle: int, epoch: int, purpose: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([ROOT, int(trial), int(cycle), int(epoch), zlib.crc32(purpose.encode())])


def rng(trial: int, cycle: int, epoch: int, purpose: str) -> np.random.Generator:
    """A numpy Generator for one purpose, e.g. rng(trial, 0, 0, "initial") for the first labelled set."""
    return np.random.default_rng(seed_sequence(trial, cycle, epoch, purpose))


def torch_seed(trial: int, cycle: int, epoch: int, purpose: str) -> int:
    """A 63-bit seed for torch.Generator / torch.manual_seed."""
    return int(seed_sequence(trial, cycle, epoch, purpose).generate_state(2, np.uint64)[0] >> np.uint64(1))


def torch_generator(trial: int, cycle: int, epoch: int, purpose: str):
    """A seeded CPU torch.Generator (torch imported here: the numpy streams serve torch-free code too)."""
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(torch_seed(trial, cycle, epoch, purpose))
    return g
