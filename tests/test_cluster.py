"""neuronscope.cluster (compiled core) against scipy's average linkage + fcluster and scikit-learn.

Partitions are compared exactly (up to relabelling) wherever they are well defined: a cut is
checked only if no merge height lies within a few float32 errors of it and scipy itself gives
the same partition on slightly perturbed distances. Exactly tied inputs (integer coordinates,
euclidean, float64) are compared merge by merge, ties included.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.metrics import silhouette_score as sk_silhouette

from neuronscope import cluster, native

_core = native.core()  # the extension itself, for the binding's own checks

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def canon(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered by first appearance, so that equal partitions compare equal."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse]


def stable_cuts(d: np.ndarray, n: int, seed: int) -> list[tuple[str, float, np.ndarray]]:
    """scipy's flat cuts of the average-linkage tree of condensed distances d that are well defined."""
    if n == 1:
        return [("distance", 1.0, np.zeros(1, int)), ("maxclust", 1, np.zeros(1, int))]
    z = linkage(d, "average")
    eps = 1e-6 * max(1.0, float(d.max()))
    rng = np.random.default_rng(seed)
    noisy = [linkage(np.clip(d + rng.uniform(-eps, eps, d.shape), 0, None), "average") for _ in range(4)]
    heights = np.sort(z[:, 2])
    levels = np.unique(np.concatenate([[0.0], heights]))
    cuts = [("distance", float(h + 1.0), None) for h in levels[-1:]]
    cuts += [("distance", float((a + b) / 2), None) for a, b in itertools.pairwise(levels) if b - a > 8 * eps]
    cuts += [("maxclust", k, None) for k in range(1, n + 1)
             if k >= n - 1 or heights[n - k - 1] - heights[n - k - 2] > 8 * eps]
    out = []
    for kind, t, _ in cuts:
        part = canon(fcluster(z, t, kind))
        if all(np.array_equal(part, canon(fcluster(zn, t, kind))) for zn in noisy):
            out.append((kind, t, part))
    return out


@st.composite
def problems(draw, max_n: int = 40):
    """Gaussian points at a random scale, with duplicated rows; d = 1 included."""
    m = draw(st.integers(1, max_n))
    d = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((m, d)) * 10.0 ** draw(st.integers(-2, 2))
    n = draw(st.integers(m, min(max_n, 2 * m)))
    idx = np.concatenate([np.arange(m), rng.integers(0, m, n - m)])
    return base[rng.permutation(idx)].astype(np.float32), seed


@SETTINGS
@given(problems(), st.sampled_from(["cosine", "euclidean"]), st.sampled_from(["float32", "float64"]))
def test_partitions_match_scipy(problem, metric, precision):
    x, seed = problem
    n = len(x)
    cuts = stable_cuts(pdist(x.astype(np.float64), metric), n, seed)
    assert cuts, "the largest threshold is always well defined"
    for kind, t, expected in cuts:
        kw = {"threshold": t} if kind == "distance" else {"n_clusters": t}
        got = cluster.hierarchical(x, metric=metric, precision=precision, **kw)
        assert np.array_equal(canon(got.labels), expected), (kind, t, got.labels, expected)
        assert got.n_clusters[0] == expected.max() + 1


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_exact_ties_reproduce_scipy_tree(n, d, seed):
    """Integer points: many exactly tied distances, the tree (order of ties included) is scipy's."""
    x = np.random.default_rng(seed).integers(0, 4, (n, d)).astype(np.float32)
    precisions = ["float64", "float32"] if d == 1 else ["float64"]  # float32 sqrt is exact for d = 1 only
    for precision in precisions:
        got = cluster.hierarchical(x, metric="euclidean", precision=precision, threshold=1.5)
        if n > 1:
            z = linkage(x.astype(np.float64), "average")
            np.testing.assert_array_equal(got.problem_linkage(0), z)
            for k in range(1, n + 1):
                np.testing.assert_array_equal(
                    canon(cluster.cut(got, n_clusters=k).labels), canon(fcluster(z, k, "maxclust")))
            assert np.array_equal(canon(got.labels), canon(fcluster(z, 1.5, "distance")))


def test_degenerate_problems_in_one_batch():
    same = np.ones((7, 3), np.float32)
    single = np.array([[1.0, 2.0, 3.0]], np.float32)
    line = np.array([[0], [1], [2], [3]], np.float32).repeat(3, axis=1)
    features, offsets = cluster.ragged([same, single, np.zeros((0, 3), np.float32), line])
    got = cluster.hierarchical(features, offsets, metric="euclidean", threshold=0.5)
    np.testing.assert_array_equal(got.n_clusters, [1, 1, 0, 4])
    np.testing.assert_array_equal(got.linkage_offsets, [0, 6, 6, 6, 9])
    assert np.all(got.problem_linkage(0)[:, 2] == 0.0)  # identical points merge at exactly 0
    # maxclust 3 on the line: the two tied merges at sqrt(3) fall together, 2 clusters (as scipy)
    np.testing.assert_array_equal(cluster.cut(got, n_clusters=3).n_clusters, [1, 1, 0, 2])
    auto = cluster.hierarchical(features, offsets, metric="euclidean")
    np.testing.assert_array_equal(auto.n_clusters[:3], [1, 1, 0])


def test_zero_vectors_under_cosine():
    x = np.array([[0, 0], [1, 0], [0, 0], [0, 2], [3, 3]], np.float32)
    d = cluster.pairwise_distances(x)
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    ref = 1 - u @ u.T
    zero = ~x.any(axis=1)
    ref[zero] = 1.0
    ref[:, zero] = 1.0
    ref[np.ix_(zero, zero)] = 0.0
    np.testing.assert_allclose(d, ref[np.triu_indices(5, 1)], atol=1e-7)


def well_conditioned(d: np.ndarray, labels: np.ndarray) -> bool:
    """False if a point's silhouette is 0/0 up to rounding: a_i and b_i both ~0 (e.g. duplicates in two clusters)."""
    for i, own in enumerate(labels):
        same = labels == own
        if same.sum() == 1:
            continue
        a = d[i, same].sum() / (same.sum() - 1)
        b = min(d[i, labels == other].mean() for other in np.unique(labels) if other != own)
        if max(a, b) < 1e-6 * max(1.0, d.max()):
            return False
    return True


@SETTINGS
@given(problems(max_n=30), st.integers(2, 6), st.sampled_from(["cosine", "euclidean"]))
def test_silhouette_matches_sklearn(problem, k, metric):
    x, seed = problem
    labels = np.random.default_rng(seed).integers(0, k, len(x)) * 7 - 3  # arbitrary label values
    x64 = x.astype(np.float64)
    assume(metric == "euclidean" or np.linalg.norm(x64, axis=1).all())
    got = cluster.silhouette_score(x, labels, metric=metric)[0]
    if 2 <= len(np.unique(labels)) <= len(x) - 1:
        assume(well_conditioned(squareform(pdist(x64, metric)), labels))
        assert abs(got - sk_silhouette(x64, labels, metric=metric)) <= 1e-6
    else:
        assert np.isnan(got)


def test_silhouette_float32_precision_on_spread_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    for metric in ("cosine", "euclidean"):
        got = cluster.silhouette_score(x, labels, metric=metric, precision="float32")[0]
        assert abs(got - sk_silhouette(x.astype(np.float64), labels, metric=metric)) <= 1e-6


def reference_auto(x: np.ndarray, metric: str, max_clusters: int, min_silhouette: float):
    """The documented automatic rule, with scipy and scikit-learn."""
    n = len(x)
    if n < 3:
        return np.zeros(n, int), np.nan
    z = linkage(x.astype(np.float64), "average", metric=metric)
    best, best_labels, seen = -np.inf, None, set()
    for k in range(2, min(max_clusters, n - 1) + 1):
        labels = fcluster(z, k, "maxclust")
        c = len(np.unique(labels))
        if c in seen or not 2 <= c <= n - 1:
            continue
        seen.add(c)
        s = sk_silhouette(x.astype(np.float64), labels, metric=metric)
        if s > best:
            best, best_labels = s, labels
    if best_labels is None or best < min_silhouette:
        return np.zeros(n, int), np.nan
    return canon(best_labels), best


@pytest.mark.parametrize("min_silhouette", [0.25, -1.0])
def test_auto_cut_follows_the_documented_rule(min_silhouette):
    rng = np.random.default_rng(2)
    blobs = [rng.standard_normal((int(rng.integers(8, 30)), 6)) * 0.3 + rng.standard_normal(6) * s
             for s in (3.0, 3.0, 0.0, 0.0, 5.0)]  # separated blobs, and pure noise (s = 0)
    xs = [np.concatenate(blobs[i : i + 2]) for i in range(4)] + [blobs[2][:2], blobs[3]]
    features, offsets = cluster.ragged(xs)
    for metric in ("euclidean", "cosine"):
        got = cluster.hierarchical(features, offsets, metric=metric, precision="float64", max_clusters=6,
                                   min_silhouette=min_silhouette)
        for b, x in enumerate(xs):
            labels, sil = reference_auto(x.astype(np.float32), metric, 6, min_silhouette)
            np.testing.assert_array_equal(canon(got.problem_labels(b)), labels)
            np.testing.assert_allclose(got.silhouette[b], sil, atol=1e-9)
    assert got.n_clusters[4] == 1  # two points: one cluster


def test_weights_count_as_copies():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((25, 4)).astype(np.float32)
    w = rng.integers(1, 4, 25)
    expanded = np.repeat(x, w, axis=0)
    first = np.concatenate([[0], np.cumsum(w)[:-1]])
    d = pdist(expanded.astype(np.float64), "cosine")
    for kind, t, part in stable_cuts(d, len(expanded), 3):
        if kind == "distance" and t > 1e-3:
            got = cluster.hierarchical(x, weights=w.astype(np.float32), threshold=t, precision="float64")
            np.testing.assert_array_equal(canon(got.labels), canon(part[first]))


def test_results_do_not_depend_on_threads_or_simd():
    rng = np.random.default_rng(4)
    sizes = rng.integers(0, 120, 23)
    features = rng.standard_normal((int(sizes.sum()), 37)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    ref = cluster.hierarchical(features, offsets, n_threads=1)
    for n_threads in (2, 5):
        got = cluster.hierarchical(features, offsets, n_threads=n_threads)
        np.testing.assert_array_equal(got.labels, ref.labels)
        np.testing.assert_array_equal(got.linkage, ref.linkage)
    initial = _core.simd_level()
    try:
        for level in ("generic", "avx2", "avx512"):
            if ["generic", "avx2", "avx512"].index(level) > ["generic", "avx2", "avx512"].index(
                    _core.detected_simd_level()):
                continue
            _core.set_simd_level(level)
            for b in range(len(sizes)):
                x = features[offsets[b] : offsets[b + 1]].astype(np.float64)
                for kind, t, part in stable_cuts(pdist(x, "cosine"), len(x), b) if len(x) else []:
                    got = cluster.hierarchical(x, **({"threshold": t} if kind == "distance" else {"n_clusters": t}))
                    np.testing.assert_array_equal(canon(got.labels), part)
    finally:
        _core.set_simd_level(initial)
