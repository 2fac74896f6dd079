"""Bad input to the clustering core raises a clear error naming the argument, and never crashes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronscope import cluster, native
from neuronscope.errors import ConfigError

_core = native.core()  # the extension itself, for the binding's own checks

X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
OFF = np.array([0, 4, 10], dtype=np.int64)


@pytest.mark.parametrize(
    ("features", "offsets", "match"),
    [
        (np.where(np.arange(30).reshape(10, 3) == 7, np.nan, X), OFF,
         r"features\[2\] \(problem 0, point 2\).*non-finite"),
        (np.where(np.arange(30).reshape(10, 3) == 29, np.inf, X), OFF, r"features\[9\] \(problem 1, point 5\)"),
        (X, np.array([0, 5, 4, 10]), "offsets must be non-decreasing"),
        (X, np.array([1, 10]), r"offsets\[0\] must be 0"),
        (X, np.array([0, 9]), r"offsets\[-1\] must equal the number of feature rows \(10\)"),
        (X, np.array([], dtype=np.int64), "at least one entry"),
        (X[:, :0], np.array([0, 10]), "at least one column"),
        (np.array([[1e20, 0], [-1e20, 0], [0, 1]], np.float32), np.array([0, 3]), "too large"),
    ],
)
def test_bad_batches(features, offsets, match):
    for metric in ("cosine", "euclidean"):
        with pytest.raises(ConfigError, match=match):
            cluster.hierarchical(features, offsets, metric=metric, threshold=0.5)
    with pytest.raises(ConfigError, match=match):
        cluster.kmeans(features, 2, offsets)


def test_core_checks_dtype_shape_and_contiguity():
    with pytest.raises(TypeError, match="features must be a float32 array"):
        _core.hierarchical(X.astype(np.float64), OFF)
    with pytest.raises(TypeError, match="offsets must be a int64 array"):
        _core.hierarchical(X, OFF.astype(np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.hierarchical(np.asfortranarray(X), OFF)
    with pytest.raises(ValueError, match=r"features must have shape \(P, D\)"):
        _core.pdist(X.ravel(), OFF)
    with pytest.raises(TypeError, match="weights must be a float32"):
        _core.kmeans(X, OFF, 2, weights=np.ones(10))
    with pytest.raises(ValueError, match="weights must have one entry per feature row"):
        _core.kmeans(X, OFF, 2, weights=np.ones(9, np.float32))
    with pytest.raises(ValueError, match=r"init must have shape \(B, n_clusters, D\) = \(2, 2, 3\)"):
        _core.kmeans(X, OFF, 2, init=np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="criterion"):
        _core.hierarchical(X, OFF, criterion="complete")
    with pytest.raises(ValueError, match="metric"):
        _core.pdist(X, OFF, metric="manhattan")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: cluster.hierarchical(X.astype(np.complex64)), "real numbers"),
        (lambda: cluster.hierarchical(X, OFF.astype(float)), "integer"),
        (lambda: cluster.hierarchical(X, threshold=0.5, n_clusters=2), "not both"),
        (lambda: cluster.hierarchical(X, n_clusters=0), "n_clusters must be >= 1"),
        (lambda: cluster.hierarchical(X, threshold=float("nan")), "threshold must not be NaN"),
        (lambda: cluster.hierarchical(X, weights=-np.ones(10)), r"weights must be finite and > 0: weights\[0\]"),
        (lambda: cluster.hierarchical(X, weights=np.full(10, np.nan)), "weights must be finite"),
        (lambda: cluster.hierarchical(np.zeros((8193, 1), np.float32)), "limited to 8192 points"),
        (lambda: cluster.hierarchical(X, precision="float16"), "precision"),
        (lambda: cluster.kmeans(X, 0), "n_clusters must be >= 1"),
        (lambda: cluster.kmeans(X, 2, n_init=0), "n_init"),
        (lambda: cluster.kmeans(X, 2, tol=-1.0), "tol"),
        (lambda: cluster.kmeans(X, 2, seed=-1), "seed"),
        (lambda: cluster.kmeans(X, 2, OFF, init=np.full((2, 2, 3), np.nan)), "init must be finite"),
        (lambda: cluster.kmeans(X, 5, OFF, init=np.zeros((2, 5, 3))), "fewer than the 5 initial centres"),
        (lambda: cluster.kmeans(X, 2, backend="gpu"), "backend"),
        (lambda: cluster.silhouette_score(X, np.zeros(10)), "labels must be integers"),
        (lambda: cluster.silhouette_score(X, np.zeros(9, int)), "labels must have one entry per feature row"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ConfigError, match=match):
        call()


def test_cut_rejects_invalid_linkage():
    good = cluster.hierarchical(X, threshold=0.5)
    for row, col, value in [(0, 0, 99.0), (1, 1, 0.5), (2, 2, np.nan), (3, 0, -1.0)]:
        z = good.linkage.copy()
        z[row, col] = value
        with pytest.raises(ConfigError, match="linkage: problem 0, merge"):
            cluster.cut(cluster.Clustering(**{**good.__dict__, "linkage": z}), n_clusters=2)
    z = good.linkage.copy()
    z[4, 0] = z[4, 1]  # a cluster used twice
    with pytest.raises(ConfigError, match="not valid"):
        cluster.cut(cluster.Clustering(**{**good.__dict__, "linkage": z}), threshold=1.0)
    with pytest.raises(ConfigError, match="expected 9 rows"):
        cluster.cut(cluster.Clustering(**{**good.__dict__, "linkage": good.linkage[:-1]}), threshold=1.0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-3, 14), min_size=0, max_size=6), st.sampled_from(["hierarchical", "kmeans", "silhouette"]))
def test_arbitrary_offsets_never_crash(offsets, fn):
    off = np.array(offsets, dtype=np.int64)
    valid = len(off) >= 1 and off[0] == 0 and off[-1] == 10 and np.all(np.diff(off) >= 0)
    call = {
        "hierarchical": lambda: cluster.hierarchical(X, off),
        "kmeans": lambda: cluster.kmeans(X, 3, off),
        "silhouette": lambda: cluster.silhouette_score(X, np.arange(10) % 3, off),
    }[fn]
    if valid:
        call()
    else:
        with pytest.raises(ConfigError):
            call()
