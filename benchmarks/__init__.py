"""Benchmarks that measure ftlib against baselines; beside the package, not part of it.

``python -m benchmarks.speed`` (``./run speed``) is the side-by-side speed comparison,
``benchmarks.speed_gpu`` its GPU throughput item, ``benchmarks.steps`` the bare training step's
rate and profile and ``benchmarks.tutorial`` the PyTorch tutorial's loops used as baselines.
"""
