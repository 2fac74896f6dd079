"""Type stubs of the compiled core (csrc/bindings.cpp). Use neuronscope.cluster and neuronscope.mining, not
this module; neuronscope.native is the only module that imports it. tests/test_core_stub.py checks that these
stubs name exactly the extension's functions, with the same parameters and defaults.

Ragged batches: features (P, D) float32 C-contiguous; offsets (B + 1,) int64 with offsets[0] = 0,
non-decreasing, offsets[-1] = P; weights (P,) float32 > 0 or None. Wrong dtypes raise TypeError,
other bad input ValueError naming the argument. n_threads <= 0 means every hardware thread.
"""

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_I32 = npt.NDArray[np.int32]
_I64 = npt.NDArray[np.int64]
_Metric = Literal["cosine", "euclidean"]
_Precision = Literal["float32", "float64"]

def build_info() -> str: ...
def hardware_threads() -> int: ...
def hierarchical(
    features: _F32,
    offsets: _I64,
    *,
    weights: _F32 | None = None,
    metric: _Metric = "cosine",
    precision: _Precision = "float32",
    criterion: Literal["auto", "distance", "maxclust"] = "auto",
    threshold: float = 0.0,
    n_clusters: int = 2,
    max_clusters: int = 8,
    min_silhouette: float = 0.25,
    n_threads: int = 0,
) -> tuple[_I32, _I32, _F64, _F64, _I64]:
    """Average linkage per problem. Returns labels (P,), n_clusters (B,), silhouette (B,),
    linkage (sum max(n_b - 1, 0), 4) in scipy's format, linkage_offsets (B + 1,)."""

def cut_linkage(
    linkage: _F64,
    offsets: _I64,
    *,
    criterion: Literal["distance", "maxclust"] = "distance",
    threshold: float = 0.0,
    n_clusters: int = 2,
    n_threads: int = 0,
) -> tuple[_I32, _I32]:
    """Flat clusters of batched linkages (rows as hierarchical returns them). Returns labels (P,), n_clusters (B,)."""

def silhouette(
    features: _F32,
    offsets: _I64,
    labels: _I64,
    *,
    metric: _Metric = "cosine",
    precision: _Precision = "float64",
    n_threads: int = 0,
) -> _F64:
    """Mean silhouette per problem (B,); NaN where undefined."""

def pdist(
    features: _F32, offsets: _I64, *, metric: _Metric = "cosine", precision: _Precision = "float32", n_threads: int = 0
) -> _F64:
    """Condensed distances of every problem in scipy's pdist order, concatenated."""

def kmeans(
    features: _F32,
    offsets: _I64,
    n_clusters: int,
    *,
    weights: _F32 | None = None,
    metric: _Metric = "euclidean",
    init: _F32 | None = None,
    n_init: int = 3,
    max_iter: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    n_threads: int = 0,
) -> tuple[_I32, _F32, _F64, _I32]:
    """Weighted k-means per problem. init: (B, n_clusters, D). Returns labels (P,),
    centroids (B, n_clusters, D) (NaN rows past n_b), inertia (B,), n_iter (B,)."""

def simd_level() -> Literal["generic", "avx2", "avx512"]:
    """Kernel family in use: the widest the CPU supports, or NEURONSCOPE_SIMD read at first use."""

def detected_simd_level() -> Literal["generic", "avx2", "avx512"]: ...
def set_simd_level(name: Literal["generic", "avx2", "avx512"]) -> None:
    """Selects the kernel family for every later call (tests, benchmarks); ValueError if unsupported."""

def mine_update(
    state: dict[str, npt.NDArray[Any]],
    acts: _F32,
    positions: _I64,
    edges: _F32,
    strata: _I64,
    neuron_offset: int,
    seed: int,
    threads: int = 0,
) -> None:
    """Folds acts (T, N) at positions (T,) into the LayerStats arrays of ``state`` (field name -> C-contiguous,
    writable array of LayerStats' dtype and shape) in place. edges (B - 1,) and strata (B,) are
    spec.hist_edges / spec.bin_strata; seed is cfg.seed & 0xFFFFFFFF; threads 0 = every hardware thread.
    Releases the GIL. Wrong dtypes raise TypeError, other bad input ValueError naming the argument."""
