"""The field's newer baselines (issue 24): stochastic batch acquisition, BatchBALD, TypiClust and
ProbCover, each against a plain-numpy transcription of its paper written here with simple loops,
and the sampling laws by frequency on small cases."""

import itertools
import math

import numpy as np
import pytest
import torch

from al_core.strategies import (
    STRATEGIES,
    SelectionContext,
    Scores,
    bald_scores,
    batchbald_select,
    probcover_select,
    stochastic_batch,
    typiclust_select,
)
from al_core.strategies.batchbald import _configurations, _joint_entropy
from al_core.strategies.stochastic import log_weights
from al_core.strategies.typical import kmeans_labels, purity_delta, typiclust_from_labels


# ---------------------------------------------------------------------------------------------- stochastic
def ref_weights(scores, mode, beta):
    """Kirsch et al. (TMLR 2023), section 3: power s**beta, softmax exp(beta s), softrank rank**-beta."""
    w = []
    for i, s in enumerate(scores):
        if mode == "power":
            w.append(s**beta)
        elif mode == "softmax":
            w.append(math.exp(beta * s))
        else:
            rank = 1 + sum(1 for j, t in enumerate(scores) if t > s or (t == s and j < i))
            w.append(rank ** (-beta))
    return np.array(w)


def ref_plackett_luce(w, seq):
    """Probability of drawing the sequence `seq` one at a time without replacement, proportional to w."""
    p, left = 1.0, list(range(len(w)))
    for i in seq:
        p *= w[i] / sum(w[j] for j in left)
        left.remove(i)
    return p


SCORES = np.array([0.1, 0.6, 0.3, 0.0, 0.45])


@pytest.mark.parametrize("mode,beta", [("power", 1.0), ("power", 2.0), ("softmax", 3.0), ("softrank", 1.0), ("softrank", 0.5)])
def test_stochastic_weights_match_the_paper(mode, beta):
    w = np.exp(log_weights(SCORES, mode, beta))
    np.testing.assert_allclose(w, ref_weights(SCORES, mode, beta), rtol=1e-12)


def binomial_ok(count, n, p, sigmas=4.5):
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("mode,beta", [("power", 1.0), ("softmax", 3.0), ("softrank", 1.0)])
def test_stochastic_single_draw_frequencies_follow_the_weights(mode, beta):
    rng, n = np.random.default_rng(24), 20000
    w = ref_weights(SCORES, mode, beta)
    counts = np.bincount([stochastic_batch(SCORES, 1, rng, mode, beta)[0] for _ in range(n)], minlength=len(SCORES))
    for i in range(len(SCORES)):
        assert binomial_ok(counts[i], n, w[i] / w.sum()), (i, counts, w / w.sum())
    if mode == "power":
        assert counts[3] == 0  # score 0: weight 0


@pytest.mark.parametrize("mode,beta", [("power", 1.0), ("softrank", 1.0)])
def test_stochastic_pairs_follow_plackett_luce(mode, beta):
    rng, n = np.random.default_rng(7), 20000
    w = ref_weights(SCORES, mode, beta)
    draws = [tuple(stochastic_batch(SCORES, 2, rng, mode, beta)) for _ in range(n)]
    ordered = {seq: ref_plackett_luce(w, seq) for seq in itertools.permutations(range(len(w)), 2)}
    for seq, p in ordered.items():  # ordered pairs: the order drawn is the Plackett-Luce order
        assert binomial_ok(sum(d == seq for d in draws), n, p), (seq, p)
    for i in range(len(w)):  # inclusion probabilities by exact enumeration
        p_in = sum(p for seq, p in ordered.items() if i in seq)
        assert binomial_ok(sum(i in d for d in draws), n, p_in), (i, p_in)


def test_stochastic_batch_edges():
    rng = np.random.default_rng(0)
    out = stochastic_batch(SCORES, 5, rng)
    assert sorted(out.tolist()) == [0, 1, 2, 3, 4] and out[-1] == 3  # the zero weight comes last
    assert len(stochastic_batch(SCORES, 0, rng)) == 0
    nan = stochastic_batch(np.array([np.nan, 1.0, 2.0]), 2, rng, "softmax")
    assert 0 not in nan.tolist()
    a = stochastic_batch(SCORES, 3, np.random.default_rng(5), "softmax", 2.0)
    assert a.tolist() == stochastic_batch(SCORES, 3, np.random.default_rng(5), "softmax", 2.0).tolist()
    with pytest.raises(ValueError, match="scores >= 0"):
        stochastic_batch(np.array([-1.0, 1.0]), 1, rng)
    with pytest.raises(ValueError, match="power, softmax, softrank"):
        stochastic_batch(SCORES, 1, rng, "gumbel")
    with pytest.raises(ValueError, match="beta"):
        stochastic_batch(SCORES, 1, rng, "power", -1.0)
    with pytest.raises(ValueError, match="cannot draw"):
        stochastic_batch(SCORES, 6, rng)


def test_a_scored_strategy_draws_its_batch_when_the_context_says_so():
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [1.0, 0.0]])
    cand = np.arange(10, 14)
    score = lambda idx: Scores(torch.tensor(probs)[idx - 10], None)  # noqa: E731
    top = STRATEGIES.get("margin").select(SelectionContext(cand, score, np.random.default_rng(0)), 2)
    assert top.tolist() == [11, 12]
    seen = set()
    for seed in range(200):
        ctx = SelectionContext(cand, score, np.random.default_rng(seed), stochastic=("power", 1.0))
        picks = STRATEGIES.get("margin").select(ctx, 2).tolist()
        assert len(set(picks)) == 2 and 13 not in picks  # margin score 0: never drawn while others have weight
        seen.add(tuple(sorted(picks)))
    assert len(seen) == 3  # every pair of the three with weight
    losses = [0.5, -1.0, 2.0, 1.0]  # learning_loss: a negative predicted loss gets weight 0 under power
    ll = SelectionContext(
        cand, lambda idx: Scores(probs[idx - 10], torch.tensor(losses)[idx - 10]), None, stochastic=("power", 1.0)
    )
    for seed in range(50):
        ll.rng = np.random.default_rng(seed)
        assert 11 not in STRATEGIES.get("learning_loss").select(ll, 3).tolist()
    assert STRATEGIES.get("margin").scored and STRATEGIES.get("bald").scored and not STRATEGIES.get("coreset").scored


# ---------------------------------------------------------------------------------------------- BatchBALD
def ref_joint_entropy(p, batch):
    """H(y_batch) by enumeration: P(y) = mean_t prod_j p[t, j, y_j] (Kirsch et al. 2019, eq. 9)."""
    t, _, k = p.shape
    h = 0.0
    for ys in itertools.product(range(k), repeat=len(batch)):
        prob = sum(np.prod([p[s, j, y] for j, y in zip(batch, ys)]) for s in range(t)) / t
        if prob > 0:
            h -= prob * math.log(prob)
    return h


def ref_batchbald(p, k):
    """The greedy of Kirsch et al. (2019), algorithm 1: maximise H(y_batch) - sum_j E_w H(y_j | w)."""
    t, n, _ = p.shape
    cond = [sum(-sum(q * math.log(q) for q in p[s, i] if q > 0) for s in range(t)) / t for i in range(n)]
    batch = []
    for _ in range(k):
        best, best_i = -np.inf, None
        for i in range(n):
            if i in batch:
                continue
            mi = ref_joint_entropy(p, batch + [i]) - sum(cond[j] for j in batch + [i])
            if mi > best + 1e-12:
                best, best_i = mi, i
        batch.append(best_i)
    return batch


def mc_table(seed, t=4, n=7, k=3, sharp=2.0):
    g = np.random.default_rng(seed).normal(size=(t, n, k)) * sharp
    return np.exp(g) / np.exp(g).sum(2, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batchbald_exact_matches_the_brute_force_greedy(seed):
    p = mc_table(seed)
    got = batchbald_select(p, 4, np.random.default_rng(0), n_samples=3**4)
    assert got.tolist() == ref_batchbald(p, 4)


def test_batchbald_exact_joint_entropy_equals_enumeration():
    p = mc_table(3)
    batch = [1, 4]
    prods, weights = _configurations(torch.tensor(p), batch, 10**6, np.random.default_rng(0))
    assert weights is None and prods.shape == (4, 9)
    h = _joint_entropy(prods, torch.tensor(p), None).numpy()
    for i in range(p.shape[1]):
        assert h[i] == pytest.approx(ref_joint_entropy(p, batch + [i]), abs=1e-10)


def test_batchbald_sampled_joint_entropy_tracks_the_exact_one():
    p = torch.tensor(mc_table(4, t=5, n=12, k=3, sharp=1.5))
    batch = [0, 2, 3, 5, 6, 7, 8, 9, 10]  # 3 ** 10 = 59,049 configurations with a candidate
    prods, weights = _configurations(p, batch, 10**6, np.random.default_rng(1))
    assert weights is None  # exact (checked against enumeration above)
    exact = _joint_entropy(prods, p, None).numpy()
    prods, weights = _configurations(p, batch, 40000, np.random.default_rng(1))
    assert weights is not None and prods.shape == (5, 40000)
    est = _joint_entropy(prods, p, weights).numpy()
    # Sampled: up to one constant shared by the candidates, so compare differences between candidates.
    np.testing.assert_allclose(est - est.mean(), exact - exact.mean(), atol=0.03)


def test_batchbald_k1_is_balds_argmax_and_it_avoids_duplicates():
    for seed in range(5):
        p = mc_table(seed, t=6, n=30, k=4)
        assert batchbald_select(p, 1, np.random.default_rng(0)).tolist() == [int(np.argmax(bald_scores(p)))]
    # Rows 0 and 1 are the same highly informative point (they tell passes 0, 1 from 2, 3); row 2,
    # slightly less informative, tells passes 0, 2 from 1, 3: what the batch does not know yet.
    p = np.zeros((4, 4, 2))
    p[:, 0] = p[:, 1] = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    p[:, 2] = [[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.05, 0.95]]
    p[:, 3] = [0.5, 0.5]
    assert bald_scores(p)[:2].tolist() == [math.log(2)] * 2 and bald_scores(p)[2] < math.log(2)
    assert batchbald_select(p, 2, np.random.default_rng(0)).tolist() == [0, 2]  # BALD's top 2 would be [0, 1]


def test_batchbald_candidate_prefilter_and_errors():
    p = mc_table(5, t=5, n=40, k=3)
    top = np.argsort(-bald_scores(p), kind="stable")[:10]
    got = batchbald_select(p, 5, np.random.default_rng(0), n_samples=200, candidates=10)
    assert set(got.tolist()) <= set(top.tolist()) and len(set(got.tolist())) == 5
    same = batchbald_select(p, 5, np.random.default_rng(0), n_samples=200, candidates=10)
    assert got.tolist() == same.tolist()
    with pytest.raises(ValueError):
        batchbald_select(p[0], 1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        batchbald_select(p, 41, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- TypiClust
def ref_typiclust(x, labels, labelled, k):
    """Hacohen et al. (ICML 2022), algorithm 1, given the clustering: loops over clusters and points."""
    taken = set(labelled)
    out = []
    for _ in range(k):
        sizes = {c: sum(1 for lab in labels if lab == c) for c in set(labels)}
        free = [c for c in sorted(sizes) if not any(labels[j] == c for j in taken)]
        c = max(free, key=lambda c: (sizes[c], -c))  # the largest; equal sizes: the lowest cluster id
        members = [j for j in range(len(x)) if labels[j] == c]
        best, best_j = -1.0, None
        for j in members:
            d = sorted(math.dist(x[j], x[m]) for m in members if m != j)
            nn = d[: min(20, len(d))]
            typ = math.inf if not nn else 1.0 / (sum(nn) / len(nn))
            if typ > best:
                best, best_j = typ, j
        out.append(best_j)
        taken.add(best_j)
    return out


def test_typiclust_matches_the_reference_given_the_clusters():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    labels = rng.integers(0, 9, size=120)
    labels[labels == 8] = 7  # cluster 7 the largest, cluster 8 empty
    labelled = [3, 17, 40]
    got = typiclust_from_labels(x, labels, labelled, 5)
    assert got.tolist() == ref_typiclust(x, labels.tolist(), labelled, 5)


def test_typiclust_picks_the_densest_point_of_the_unlabelled_blobs():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])
    sizes = [40, 30, 20, 10]
    x = np.concatenate([c + rng.normal(size=(s, 2)) for c, s in zip(centres, sizes)])
    blob = np.repeat(np.arange(4), sizes)
    labelled = [0]  # blob 0 is labelled: k = 3 clusters + 1 = 4, the blobs
    got = typiclust_select(x, labelled, 3, np.random.default_rng(0))
    assert blob[got].tolist() == [1, 2, 3]  # the largest unlabelled blobs first
    assert got.tolist() == ref_typiclust(x, blob.tolist(), labelled, 3)  # each blob's most typical point
    again = typiclust_select(torch.tensor(x), labelled, 3, np.random.default_rng(0))
    assert again.tolist() == got.tolist()
    labels = kmeans_labels(x, 4, np.random.default_rng(0))
    assert len(set(labels[:40])) == 1 and len(set(labels)) == 4


# ---------------------------------------------------------------------------------------------- ProbCover
def ref_probcover(x, labelled, k, delta):
    """Yehuda et al. (NeurIPS 2022), algorithm 1: greedy coverage of the delta-ball graph, with loops;
    ties (the paper leaves them open) to the point nearest the points' mean, as the project breaks them
    (so that permuted rows pick the same points)."""
    n = len(x)
    mean = [sum(p[d] for p in x) / n for d in range(len(x[0]))]
    near = sorted(range(n), key=lambda i: (math.dist(x[i], mean), i))
    rank = {i: r for r, i in enumerate(near)}
    ball = [[j for j in range(n) if j == i or math.dist(x[i], x[j]) < delta] for i in range(n)]
    covered = set()
    for i in labelled:
        covered.update(ball[i])
    out = []
    for _ in range(k):
        best, best_i = -1, None
        for i in range(n):
            if i in labelled or i in out:
                continue
            gain = sum(1 for j in ball[i] if j not in covered)
            if gain > best or (gain == best and rank[i] < rank[best_i]):
                best, best_i = gain, i
        out.append(best_i)
        covered.update(ball[best_i])
    return out


def ref_purity_delta(x, labels, alpha=0.95):
    """The largest delta (scanned over every pairwise distance) with purity >= alpha (ProbCover, section 4)."""
    n = len(x)
    d = [[math.dist(x[i], x[j]) for j in range(n)] for i in range(n)]
    best = 0.0
    for delta in sorted({d[i][j] for i in range(n) for j in range(i + 1, n)}):
        pure = sum(all(labels[j] == labels[i] for j in range(n) if d[i][j] < delta) for i in range(n)) / n
        if pure >= alpha:
            best = max(best, delta)
    return best


@pytest.mark.parametrize("delta", [0.5, 1.0, 1.6])
def test_probcover_matches_the_reference(delta):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 3))
    labelled = [4, 9, 33]
    got = probcover_select(x, labelled, 12, delta)
    assert got.tolist() == ref_probcover(x, labelled, 12, delta)
    assert got.tolist() == probcover_select(torch.tensor(x), labelled, 12, delta).tolist()


def test_probcover_purity_delta_matches_the_scan():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 3.0])
    labels = np.array([0] * 30 + [1] * 30)
    labels[[5, 40]] = [1, 0]  # two outliers in the other's blob
    got = purity_delta(x, labels)
    assert got == pytest.approx(ref_purity_delta(x, labels.tolist()), rel=1e-5)
    assert got > 0
