"""Selection that depends only on the geometry: the embedding strategies pick the same points when
every embedding is translated by a constant, rotated, or when the rows are permuted (picks mapped
back), on points far from the origin.

BADGE works on gradient embeddings, whose origin means something (a zero gradient: a confident,
certain prediction; its first pick is the largest gradient), so it is held to rotation about the
origin and to permutation, not to translation.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import special_ortho_group

from al_core.strategies import badge_seeding, kcenter_greedy, probcover_select, typiclust_select
from al_core.strategies.typical import kmeans_labels, purity_delta

D = 8


def blobs(seed: int, far: float = 500.0) -> np.ndarray:
    """Six unit-spread blobs of 30 points centred at 0, 100, ..., 500 along a random direction, the
    whole set moved `far` from the origin; coordinates on a 1/64 grid, so that a translation by an
    integer is exact in float32 (the strategies' input type)."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=D)
    direction /= np.linalg.norm(direction)
    centres = far + np.arange(6)[:, None] * 100.0 * direction[None, :]
    x = (centres[:, None, :] + rng.normal(size=(6, 30, D))).reshape(-1, D)
    return np.round(x * 64) / 64


def variants(x: np.ndarray, seed: int):
    """(name, transformed points, map from a pick in the transformed rows to the original row)."""
    rng = np.random.default_rng(seed + 100)
    perm = rng.permutation(len(x))
    rot = special_ortho_group.rvs(D, random_state=seed)
    yield "translated", x + 1024.0, lambda p: p
    yield "centred on the mean", x - np.round(x.mean(0) * 64) / 64, lambda p: p  # exact: both on the grid
    yield "rotated", x @ rot.T, lambda p: p
    yield "permuted", x[perm], lambda p: perm[p]


def _coreset(x):
    labelled = np.arange(0, len(x), 37)
    cand = np.setdiff1d(np.arange(len(x)), labelled)
    return cand[kcenter_greedy(x[cand], x[labelled], 12)]


def _typiclust(x, labelled_rows):
    return typiclust_select(x, labelled_rows, 8, np.random.default_rng(3))


def _probcover(x, labelled_rows):
    delta = purity_delta(x, kmeans_labels(x, 6, np.random.default_rng(4)))
    return probcover_select(x, labelled_rows, 8, delta)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coreset_picks_depend_on_the_geometry_only(seed):
    x = blobs(seed)
    want = _coreset(x).tolist()
    for name, y, back in variants(x, seed):
        if name == "permuted":  # the labelled rows are rows of x: permute them along
            perm = np.argsort(back(np.arange(len(x))))  # original row -> its place in y
            labelled = perm[np.arange(0, len(x), 37)]
            cand = np.setdiff1d(np.arange(len(y)), labelled)
            got = back(cand[kcenter_greedy(y[cand], y[labelled], 12)]).tolist()
        else:
            got = _coreset(y).tolist()
        assert got == want, name


@pytest.mark.parametrize("select", [_typiclust, _probcover], ids=["typiclust", "probcover"])
@pytest.mark.parametrize("seed", [0, 1])
def test_typiclust_and_probcover_depend_on_the_geometry_only(select, seed):
    x = blobs(seed)
    labelled = np.array([5, 70, 140])
    want = sorted(select(x, labelled).tolist())
    for name, y, back in variants(x, seed):
        where = np.argsort(back(np.arange(len(x))))  # original row -> its place in y
        got = sorted(back(select(y, where[labelled])).tolist())
        assert got == want, name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_badge_draws_depend_on_the_geometry_only(seed):
    x = blobs(seed) / 100.0
    want = badge_seeding(x, 10, np.random.default_rng(seed)).tolist()
    for name, y, back in variants(x, seed):
        if name in ("translated", "centred on the mean"):
            continue  # gradient space has a meaningful origin (see the module's docstring)
        assert back(badge_seeding(y, 10, np.random.default_rng(seed))).tolist() == want, name


def test_the_far_blobs_of_the_report_select_alike_near_and_far():
    """Six unit blobs at 0..500 and the same blobs about their mean: the same picks (float32 inputs,
    where |x|^2 + |y|^2 - 2 x.y lost the digits that separate near neighbours)."""
    x = blobs(7, far=0.0)
    near = x - np.round(x.mean(0) * 64) / 64
    labelled = np.array([1, 2, 3])
    assert sorted(_typiclust(x, labelled).tolist()) == sorted(_typiclust(near, labelled).tolist())
    assert _coreset(x).tolist() == _coreset(near).tolist()
