"""neuronscope.cluster.kmeans (compiled core and faiss path) against scikit-learn's KMeans."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from neuronscope import cluster


def inertia(x: np.ndarray, w: np.ndarray | None, centroids: np.ndarray, labels: np.ndarray) -> float:
    diff = x.astype(np.float64) - centroids.astype(np.float64)[labels]
    sq = np.einsum("ij,ij->i", diff, diff)
    return float(sq.sum() if w is None else sq @ w)


def blobs(rng: np.random.Generator, n: int, d: int, k: int) -> np.ndarray:
    centers = rng.standard_normal((k, d)) * 3
    return (centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)


@pytest.mark.parametrize("weighted", [False, True])
def test_lloyd_no_worse_than_sklearn_with_same_init(weighted):
    rng = np.random.default_rng(0)
    sizes, k, d = [300, 57, 1000, 12, 4096 + 7], 5, 9
    xs = [blobs(rng, n, d, 4) for n in sizes]
    ws = [rng.uniform(0.1, 3.0, n).astype(np.float32) for n in sizes] if weighted else [None] * len(sizes)
    inits = np.stack([x[rng.choice(len(x), k, replace=False)] for x in xs])
    features, offsets = cluster.ragged(xs)
    got = cluster.kmeans(features, k, offsets, weights=np.concatenate(ws) if weighted else None, init=inits,
                         tol=0.0, max_iter=300)
    for b, (x, w) in enumerate(zip(xs, ws, strict=True)):
        sk = KMeans(k, init=inits[b], n_init=1, max_iter=300, algorithm="lloyd").fit(x, sample_weight=w)
        ours = inertia(x, w, got.centroids[b], got.problem_labels(b))
        assert ours <= inertia(x, w, sk.cluster_centers_, sk.labels_) * (1 + 1e-6)
        assert got.inertia[b] == pytest.approx(ours, rel=1e-5)


def test_kmeans_plus_plus_finds_separated_clusters_and_is_deterministic():
    rng = np.random.default_rng(1)
    centers = np.eye(6, 12, dtype=np.float32) * 20
    truth = rng.integers(0, 6, 3000)
    x = centers[truth] + rng.standard_normal((3000, 12)).astype(np.float32)
    a = cluster.kmeans(x, 6, seed=7, n_threads=1, backend="core")
    b = cluster.kmeans(x, 6, seed=7, n_threads=2, backend="core")  # one problem: threads split the points
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    # each true cluster maps to one label
    assert len({(t, label) for t, label in zip(truth, a.labels, strict=True)}) == 6
    sk = KMeans(6, n_init=3, random_state=0).fit(x)
    assert a.inertia[0] <= sk.inertia_ * (1 + 1e-4)


def test_small_problems_and_cosine():
    rng = np.random.default_rng(2)
    features, offsets = cluster.ragged([rng.standard_normal((n, 3)) for n in (0, 1, 2, 5)])
    got = cluster.kmeans(features, 3, offsets, metric="cosine")
    np.testing.assert_array_equal(got.inertia[:3], [0.0, 0.0, 0.0])  # k >= n: every point is a centroid
    assert np.isnan(got.centroids[1, 1:]).all()
    assert not np.isnan(got.centroids[3]).any()
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sl = slice(offsets[3], offsets[4])
    assert got.inertia[3] == pytest.approx(inertia(unit[sl], None, got.centroids[3], got.labels[sl]), rel=1e-5)


def test_faiss_path_and_fallback(monkeypatch):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    xs = [blobs(rng, n, 8, 3) for n in (50, 2000, 3000)]
    features, offsets = cluster.ragged(xs)
    monkeypatch.setattr(cluster, "FAISS_MIN_POINTS", 1000)
    mixed = cluster.kmeans(features, 3, offsets, seed=1)
    np.testing.assert_array_equal(mixed.used_faiss, [False, True, True])
    core = cluster.kmeans(features, 3, offsets, seed=1, backend="core")
    for b, x in enumerate(xs):
        sl = slice(offsets[b], offsets[b + 1])
        assert mixed.inertia[b] == pytest.approx(inertia(x, None, mixed.centroids[b], mixed.labels[sl]), rel=1e-4)
        assert mixed.inertia[b] <= core.inertia[b] * 1.05
    monkeypatch.setattr(cluster, "_faiss", lambda: None)  # as on a machine without faiss
    fallback = cluster.kmeans(features, 3, offsets, seed=1)
    assert not fallback.used_faiss.any()
    np.testing.assert_array_equal(fallback.labels, core.labels)
    with pytest.raises(cluster.ConfigError, match="faiss"):
        cluster.kmeans(features, 3, offsets, backend="faiss")
