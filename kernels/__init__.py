"""Triton kernels (installed as ``neuronscope.kernels``); each public module has a launcher and a ``*_ref``.

* :mod:`.mine` — ``mine_stats`` / ``fused_gated_act_mine`` / ``mine_topk``: every neuron's streaming
  statistics in one pass (fused into a gated MLP's activation when wanted); ``mine_ref`` is the reference.
  Its kernels live in the private :mod:`._mine_scan` (the pass over the activations) and
  :mod:`._mine_merge` (the exact merge of the candidates), the per-call state in :mod:`._mine_job`.
* :mod:`.corr` — ``pearson`` / ``corr_triton``: batched Pearson correlation; ``corr_ref`` is the reference.
* :mod:`._device` — where the kernels run (CUDA, or the CPU under ``TRITON_INTERPRET=1``), shared by both.

Nothing is imported here: ``corr``'s reference path works without Triton, and no device is queried at
import time.
"""
