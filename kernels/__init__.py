"""Triton kernels (installed as ``neuronscope.kernels``); each module has a launcher and a ``*_ref``.

* :mod:`.mine` — ``mine_stats`` / ``fused_gated_act_mine`` / ``mine_topk``: every neuron's streaming
  statistics in one pass (fused into a gated MLP's activation when wanted); ``mine_ref`` is the reference.
* :mod:`.corr` — ``pearson`` / ``corr_triton``: batched Pearson correlation; ``corr_ref`` is the reference.

Nothing is imported here: ``corr``'s reference path works without Triton, and no device is queried at
import time.
"""
