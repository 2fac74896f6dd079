"""A cheap polysemanticity screen over a whole NeuronStore, before any explainer runs.

For every neuron the layer's full MLP activation vectors at its top-k tokens (the model's own
contextual representation there) are centred by the layer's mean vector — contextual vectors share
a large common direction, so uncentred cosines say little — and clustered with average linkage
(the C++ core, all neurons of a layer in one batched call, cut automatically by silhouette). A
neuron whose strongest tokens fall into two or more well-separated clusters, each holding a fair
share of them, is a polysemanticity candidate; ``neuronscope run`` explains the strongest
candidates beside its random sample. The screen is a ranking, not a verdict: the agent loop decides
how many modes a neuron has.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from .cluster import hierarchical
from .store import NeuronStore

if TYPE_CHECKING:
    from .activations import ActivationSource


@dataclass
class ScreenRow:
    layer: int
    index: int
    clusters: int
    """Clusters of the top tokens holding at least ``min_share`` of them, with distinct commonest tokens
    (1 = one coherent group)."""
    silhouette: float
    """Mean silhouette of the automatic cut (NaN when it kept one cluster)."""
    n_points: int

    @property
    def key(self) -> tuple[float, float]:
        """Sort key, most polysemantic first."""
        s = self.silhouette if np.isfinite(self.silhouette) else 0.0
        return (-float(self.clusters), -s)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["silhouette"] = None if not np.isfinite(self.silhouette) else round(float(self.silhouette), 4)
        return d


def screen(store: NeuronStore, layers: list[int] | None = None, *, top: int = 32, min_share: float = 0.15,
           dims: int = 256, seed: int = 0, activations: ActivationSource | None = None) -> list[ScreenRow]:
    """Ranks every neuron of ``layers`` (default all) by how many separate contexts its top tokens form.

    ``top``: strongest tokens per neuron used (≤ the store's k); ``dims``: the (N,) activation vectors are
    projected to this many dimensions with a seeded Gaussian map first (cosines are kept to within a few
    percent, Johnson–Lindenstrauss, and the clustering of thousands of neurons gets ~N/dims times cheaper).
    ``activations``: the store's activation source (default: its subject model). Returns rows sorted most
    polysemantic first.
    """
    from .activations import activation_source

    layers = store.layers if layers is None else sorted(layers)
    activations = activations if activations is not None else activation_source(store)
    # One forward pass for every layer when the cache fits in memory (a no-op when an explainer has prepared
    # them already), else one layer at a time: memory bounded by one layer's cache.
    whole = activations.prepare(layers)
    rng = np.random.default_rng(seed)
    tokens = store.tokens.tokens
    rows: list[ScreenRow] = []
    for layer in layers:
        if not whole:
            activations.prepare([layer])
        st = store.stats(layer)
        pos = st.topk_positions[:, :top].numpy()
        n = pos.shape[0]
        mean = st.mean.numpy().astype(np.float32)
        proj = None
        if dims and dims < n:
            proj = (rng.standard_normal((n, dims)) / np.sqrt(dims)).astype(np.float32)
        uniq = np.unique(pos[pos >= 0])
        vecs = activations.vectors(layer, uniq) - mean
        if proj is not None:
            vecs = vecs @ proj
        where = np.searchsorted(uniq, np.where(pos >= 0, pos, uniq[0] if len(uniq) else 0))
        sizes = (pos >= 0).sum(axis=1)
        feats = np.concatenate([vecs[where[i, : sizes[i]]] for i in range(n)]).astype(np.float32)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        cl = hierarchical(feats, offsets, metric="cosine", max_clusters=6)
        for i in range(n):
            lab = cl.labels[offsets[i] : offsets[i + 1]]
            counts = np.bincount(lab) if len(lab) else np.zeros(0, dtype=np.int64)
            ids = tokens[pos[i, : sizes[i]]]
            # Clusters whose commonest token is the same are one context seen at different positions
            # (runs of "* * * *" split by position alone), not two meanings.
            big = len({int(np.bincount(ids[lab == c]).argmax())
                       for c in np.flatnonzero(counts >= max(2, min_share * len(lab)))})
            rows.append(ScreenRow(layer, i, max(big, 1 if len(lab) else 0), float(cl.silhouette[i]), len(lab)))
    rows.sort(key=lambda r: (r.key, r.layer, r.index))
    return rows
