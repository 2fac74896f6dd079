"""Triton kernels (installed as ``neuronscope.kernels``); each module has a launcher and a ``*_ref``."""
