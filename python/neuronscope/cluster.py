"""Clustering of a neuron's activating tokens into semantic modes, batched over many neurons.

A batch of B problems is *ragged*: ``features`` (P, D) holds the points of every problem back to
back and ``offsets`` (B + 1,) int64 marks where each starts (problem b is rows
``offsets[b]:offsets[b + 1]``; ``offsets=None`` means one problem). Problems run in parallel in
the compiled core with the GIL released; results do not depend on ``n_threads``.

Distances: ``cosine`` is 1 - cos(a, b) (a zero vector is at distance 1 from any other vector, 0
from another zero vector); ``euclidean`` is ||a - b||. ``precision="float32"`` accumulates in
float32 (fast, ~1e-7 absolute error), ``"float64"`` in double (scipy's tree even on exact ties).

Hierarchical clustering is average linkage (UPGMA), the tree of ``scipy.cluster.hierarchy.linkage(
X, "average", metric)``, cut as ``fcluster`` does. The automatic cut (no ``threshold`` nor
``n_clusters``) keeps the maxclust cut k = 2 .. ``max_clusters`` of best mean silhouette (ties:
fewer clusters) and answers one cluster when that silhouette is below ``min_silhouette`` (0.25:
Kaufman & Rousseeuw's "no substantial structure"), below 3 points, or when all points merge at one
height. Problems are limited to 8192 points; larger ones belong to :func:`kmeans`.

k-means is weighted, seeded by greedy k-means++, with Lloyd iterations and restarts. Problems of
at least :data:`FAISS_MIN_POINTS` points go to faiss when it is importable (it trains on a sample
of 256 points per centroid, hence its speed there); otherwise the compiled k-means runs,
multithreaded inside the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from . import native
from .errors import ConfigError

Metric = Literal["cosine", "euclidean"]
Precision = Literal["float32", "float64"]
Backend = Literal["auto", "core", "faiss"]

FAISS_MIN_POINTS = 100_000
"""Problems with at least this many points use faiss for k-means when it is importable."""

__all__ = ["FAISS_MIN_POINTS", "Clustering", "KMeansResult", "cut", "hierarchical", "kmeans", "pairwise_distances",
           "ragged", "silhouette_score"]


@dataclass(frozen=True)
class Clustering:
    """Flat clusters of every problem of a batch, with the average-linkage trees they come from."""

    labels: np.ndarray
    """(P,) int32: cluster of each point, 0 .. n_clusters[b] - 1 within its problem, numbered by first appearance."""
    n_clusters: np.ndarray
    """(B,) int32 (0 for an empty problem)."""
    silhouette: np.ndarray
    """(B,) float64: mean silhouette of the automatic cut; NaN for fixed cuts and single clusters."""
    linkage: np.ndarray
    """(M, 4) float64: each problem's merges in scipy's linkage format (point ids local to the problem)."""
    linkage_offsets: np.ndarray
    """(B + 1,) int64: problem b's merges are rows linkage_offsets[b]:linkage_offsets[b + 1]."""
    offsets: np.ndarray
    """(B + 1,) int64: the point offsets of the batch."""

    def problem_labels(self, b: int) -> np.ndarray:
        """Labels of problem b: (n_b,) int32."""
        return self.labels[self.offsets[b] : self.offsets[b + 1]]

    def problem_linkage(self, b: int) -> np.ndarray:
        """Linkage matrix of problem b: (max(n_b - 1, 0), 4) float64, usable with scipy.cluster.hierarchy."""
        return self.linkage[self.linkage_offsets[b] : self.linkage_offsets[b + 1]]


@dataclass(frozen=True)
class KMeansResult:
    """k-means of every problem of a batch."""

    labels: np.ndarray
    """(P,) int32: centroid of each point within its problem."""
    centroids: np.ndarray
    """(B, k, D) float32; rows past min(k, n_b) are NaN."""
    inertia: np.ndarray
    """(B,) float64: sum over the points of weight x squared distance to their centroid."""
    n_iter: np.ndarray
    """(B,) int32: Lloyd iterations of the winning restart."""
    offsets: np.ndarray
    """(B + 1,) int64: the point offsets of the batch."""
    used_faiss: np.ndarray
    """(B,) bool: which problems faiss clustered."""

    def problem_labels(self, b: int) -> np.ndarray:
        """Labels of problem b: (n_b,) int32."""
        return self.labels[self.offsets[b] : self.offsets[b + 1]]


def ragged(problems: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates B point sets (n_b, D) into ``features`` (P, D) float32 and ``offsets`` (B + 1,) int64."""
    arrays = [_real(p, f"problems[{i}]", 2) for i, p in enumerate(problems)]
    if len({a.shape[1] for a in arrays}) != 1:
        raise ConfigError("ragged: need at least one problem, all with the same number of columns D")
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    return np.ascontiguousarray(np.concatenate(arrays)), offsets


def hierarchical(
    features: np.ndarray,
    offsets: np.ndarray | None = None,
    *,
    weights: np.ndarray | None = None,
    metric: Metric = "cosine",
    threshold: float | None = None,
    n_clusters: int | None = None,
    max_clusters: int = 8,
    min_silhouette: float = 0.25,
    precision: Precision = "float32",
    n_threads: int | None = None,
) -> Clustering:
    """Average-linkage clustering of every problem, cut into flat clusters.

    features: (P, D) float (cast to float32); offsets: (B + 1,) int or None for one problem;
    weights: (P,) > 0 point multiplicities (a point of weight w counts as w copies) or None.
    Cut at distance ``threshold`` (fcluster "distance"), into at most ``n_clusters``
    (fcluster "maxclust"), or automatically when both are None (see the module docstring; its
    silhouettes count every point once, whatever its weight).
    """
    if threshold is not None and n_clusters is not None:
        raise ConfigError("give threshold or n_clusters, not both")
    x, off = _real(features, "features", 2), _offsets(offsets, features)
    labels, counts, sil, z, z_off = _call(
        "hierarchical", x, off, weights=None if weights is None else _real(weights, "weights", 1), metric=metric,
        precision=precision, max_clusters=int(max_clusters), min_silhouette=float(min_silhouette),
        n_threads=_threads(n_threads), **_cut_args(threshold, n_clusters))
    return Clustering(labels, counts, sil, z, z_off, off)


def cut(clustering: Clustering, *, threshold: float | None = None, n_clusters: int | None = None,
        n_threads: int | None = None) -> Clustering:
    """Re-cuts the trees of ``clustering`` at ``threshold`` or into at most ``n_clusters`` (no distances recomputed)."""
    if (threshold is None) == (n_clusters is None):
        raise ConfigError("give exactly one of threshold or n_clusters")
    labels, counts = _call("cut_linkage", np.ascontiguousarray(clustering.linkage, dtype=np.float64),
                           clustering.offsets, n_threads=_threads(n_threads), **_cut_args(threshold, n_clusters))
    return replace(clustering, labels=labels, n_clusters=counts, silhouette=np.full(len(counts), np.nan))


def silhouette_score(features: np.ndarray, labels: np.ndarray, offsets: np.ndarray | None = None, *,
                     metric: Metric = "cosine", precision: Precision = "float64",
                     n_threads: int | None = None) -> np.ndarray:
    """Mean silhouette of each problem, as scikit-learn's ``silhouette_score``: (B,) float64.

    labels: (P,) int, any values (each distinct value within a problem is a cluster). NaN where
    the score is undefined (fewer than 2 or more than n_b - 1 clusters; scikit-learn raises).
    """
    x, off = _real(features, "features", 2), _offsets(offsets, features)
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise ConfigError(f"labels must be integers, got dtype {lab.dtype}")
    return _call("silhouette", x, off, np.ascontiguousarray(lab, dtype=np.int64), metric=metric,
                 precision=precision, n_threads=_threads(n_threads))


def pairwise_distances(features: np.ndarray, offsets: np.ndarray | None = None, *, metric: Metric = "cosine",
                       precision: Precision = "float32", n_threads: int | None = None) -> np.ndarray:
    """Condensed distances of every problem (scipy's ``pdist`` order), concatenated.

    Returns (sum n_b (n_b - 1) / 2,) float64.
    """
    x, off = _real(features, "features", 2), _offsets(offsets, features)
    return _call("pdist", x, off, metric=metric, precision=precision, n_threads=_threads(n_threads))


def kmeans(
    features: np.ndarray,
    n_clusters: int,
    offsets: np.ndarray | None = None,
    *,
    weights: np.ndarray | None = None,
    metric: Metric = "euclidean",
    init: np.ndarray | None = None,
    n_init: int = 3,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    n_threads: int | None = None,
    backend: Backend = "auto",
) -> KMeansResult:
    """Weighted k-means of every problem into min(n_clusters, n_b) clusters.

    features: (P, D) float (cast to float32); weights: (P,) > 0 (e.g. activations) or None;
    init: (B, n_clusters, D) starting centroids (then a single run) or None for k-means++ with
    ``n_init`` restarts. ``metric="cosine"`` clusters the L2-normalised points. Stops when no
    label changes or the squared centroid shift is <= tol x mean feature variance (as
    scikit-learn). ``backend``: "auto" (faiss for problems of >= FAISS_MIN_POINTS points when
    importable), "core" or "faiss".
    """
    x, off, k = _real(features, "features", 2), _offsets(offsets, features), int(n_clusters)
    w = None if weights is None else _real(weights, "weights", 1)
    init = None if init is None else _real(init, "init", 3)
    if int(seed) < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    options = {"metric": metric, "n_init": int(n_init), "max_iter": int(max_iter), "seed": int(seed)}
    use_faiss = _faiss_problems(np.diff(off), backend)
    core = np.flatnonzero(~use_faiss)
    if len(core) == len(use_faiss):
        out = _call("kmeans", x, off, k, weights=w, init=init, tol=float(tol), n_threads=_threads(n_threads),
                    **options)
        return KMeansResult(*out, off, use_faiss)
    labels, inertia, n_iter = np.zeros(len(x), np.int32), np.zeros(len(use_faiss)), np.zeros(len(use_faiss), np.int32)
    centroids = np.full((len(use_faiss), k, x.shape[1]), np.nan, dtype=np.float32)
    if len(core):  # the small problems still go to the compiled core, as one sub-batch
        rows = np.concatenate([np.arange(off[b], off[b + 1]) for b in core])
        sub_off = np.concatenate([[0], np.cumsum(np.diff(off)[core])]).astype(np.int64)
        labels[rows], centroids[core], inertia[core], n_iter[core] = _call(
            "kmeans", np.ascontiguousarray(x[rows]), sub_off, k,
            weights=None if w is None else np.ascontiguousarray(w[rows]),
            init=None if init is None else np.ascontiguousarray(init[core]), tol=float(tol),
            n_threads=_threads(n_threads), **options)
    for b in np.flatnonzero(use_faiss):
        rows_b = slice(off[b], off[b + 1])
        labels[rows_b], cent, inertia[b], n_iter[b] = _faiss_kmeans(
            x[rows_b], None if w is None else w[rows_b], k, init=None if init is None else init[b],
            n_threads=n_threads, **options)
        centroids[b, : len(cent)] = cent
    return KMeansResult(labels, centroids, inertia, n_iter, off, use_faiss)


def _faiss_problems(sizes: np.ndarray, backend: str) -> np.ndarray:
    """(B,) bool: the problems faiss clusters."""
    if backend not in ("auto", "core", "faiss"):
        raise ConfigError(f"backend: expected 'auto', 'core' or 'faiss', got {backend!r}")
    if backend == "faiss" and _faiss() is None:
        raise ConfigError("backend='faiss' but faiss is not importable (pip install faiss-cpu)")
    if backend == "core" or _faiss() is None:
        return np.zeros(len(sizes), dtype=bool)
    return sizes >= (1 if backend == "faiss" else FAISS_MIN_POINTS)


def _faiss_kmeans(x: np.ndarray, w: np.ndarray | None, k: int, *, metric: str, init: np.ndarray | None, n_init: int,
                  max_iter: int, seed: int, n_threads: int | None) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One problem x (n, D) float32 with faiss: labels (n,) int32, centroids (k_eff, D), inertia, iterations."""
    faiss = _faiss()
    if not np.isfinite(x).all() or (w is not None and not (np.isfinite(w).all() and (w > 0).all())):
        raise ConfigError("features must be finite and weights finite and > 0 (in a problem sent to faiss)")
    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"metric: expected 'cosine' or 'euclidean', got {metric!r}")
    if metric == "cosine":
        norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)
    k_eff, previous = min(k, x.shape[0]), faiss.omp_get_max_threads()
    km = faiss.Kmeans(x.shape[1], k_eff, niter=max_iter, nredo=1 if init is not None else n_init,
                      seed=seed % 2**31, verbose=False)
    try:
        faiss.omp_set_num_threads(int(n_threads) if n_threads else previous)
        km.train(x, weights=w, init_centroids=None if init is None else init[:k_eff])
        labels = km.index.search(x, 1)[1][:, 0].astype(np.int32)
    finally:
        faiss.omp_set_num_threads(previous)
    inertia, step = 0.0, 1 << 16
    for i in range(0, x.shape[0], step):  # in float64, in chunks to bound memory
        diff = x[i : i + step].astype(np.float64) - km.centroids[labels[i : i + step]]
        sq = np.einsum("ij,ij->i", diff, diff)
        inertia += float(sq.sum() if w is None else sq @ w[i : i + step])
    return labels, km.centroids, inertia, max_iter


def _faiss():
    try:
        import faiss
    except ImportError:  # the GPU image ships without faiss: the compiled k-means takes over
        return None
    return faiss


def _call(name: str, *args, **kwargs):
    """Runs the compiled core's function ``name``; its ValueErrors become ConfigError (one exception family)."""
    fn = getattr(native.core(), name)
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _real(a: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """a as a C-contiguous float32 array of ndim dimensions, or ConfigError naming it."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ConfigError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _offsets(offsets: np.ndarray | None, features: np.ndarray) -> np.ndarray:
    if offsets is None:
        return np.array([0, np.shape(features)[0]], dtype=np.int64)
    off = np.asarray(offsets)
    if off.dtype.kind not in "iu" or off.ndim != 1:
        raise ConfigError(f"offsets must be a 1-D integer array (B + 1,), got dtype {off.dtype} shape {off.shape}")
    return np.ascontiguousarray(off, dtype=np.int64)


def _cut_args(threshold: float | None, n_clusters: int | None) -> dict:
    criterion = "auto" if threshold is None and n_clusters is None else "maxclust" if threshold is None else "distance"
    return {"criterion": criterion, "threshold": 0.0 if threshold is None else float(threshold),
            "n_clusters": 2 if n_clusters is None else int(n_clusters)}


def _threads(n_threads: int | None) -> int:
    return 0 if n_threads is None else int(n_threads)
