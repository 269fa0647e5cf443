"""The bare training step of lite0, the ceiling of ``fit_vs_tutorial``: its rate and where its time goes.

``python -m benchmarks.speed`` reports both beside its side-by-side ratios; they are here on their own so a
reader can time or profile a step without running the benchmark.

Example:
    >>> step_rate(160)["images_per_s"], step_rate(160, channels_last=False)["images_per_s"]  # doctest: +SKIP
    >>> step_profile(160)  # a DataFrame: operator family, seconds per step, share  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import torch

from .common import BATCH, build


def warm_up(num_classes: int, res: int) -> None:
    """One training step per memory format, so one-off kernel set-up is charged to neither side."""
    bb = build(num_classes)
    for fmt in (torch.contiguous_format, torch.channels_last):
        bb.model.to(memory_format=fmt).train()
        bb.model(torch.randn(8, 3, res, res).contiguous(memory_format=fmt)).sum().backward()


def _bare_step(res: int, channels_last: bool, compiled: bool = False, num_classes: int = 2):
    """One lite0 training step on a fixed random batch of ``BATCH`` images, as a callable."""
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build(num_classes).model.train().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    x = torch.randn(BATCH, 3, res, res).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (BATCH,))
    f = torch.compile(model) if compiled else model

    def step():
        loss = F.cross_entropy(f(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def step_rate(res: int = 160, channels_last: bool = True, steps: int = 6, compiled: bool = False,
              num_classes: int = 2) -> dict:
    """Images/s of bare lite0 training steps (batch 32, one fixed random batch): the ceiling any loop
    can reach here, without data, augmentation or evaluation. ``compiled`` wraps the model in
    ``torch.compile`` (its compile time is reported apart, as ``warmup_seconds``).

    Example:
        >>> step_rate(64, steps=1)["images_per_s"] > 0  # doctest: +SKIP
    """
    step = _bare_step(res, channels_last, compiled, num_classes)
    start = time.perf_counter()
    step()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return {"images_per_s": steps * BATCH / (time.perf_counter() - start), "warmup_seconds": warm}


def _op_family(name: str, shapes: list) -> str:
    """The family of one profiler row; a depthwise kernel is ``[C, 1, k, k]`` (forward: 2nd input,
    backward: 3rd, after the output gradient)."""
    def depthwise(i):
        return len(shapes) > i and len(shapes[i]) == 4 and shapes[i][1] == 1
    if name == "aten::mkldnn_convolution":
        return "conv forward, depthwise" if depthwise(1) else "conv forward, dense"
    if name == "aten::convolution_backward":
        return "conv backward, depthwise" if depthwise(2) else "conv backward, dense"
    return {"aten::native_batch_norm": "BatchNorm forward", "aten::native_batch_norm_backward": "BatchNorm backward",
            "aten::clamp": "ReLU6 forward (clamp)", "aten::hardtanh_backward": "ReLU6 backward",
            "aten::copy_": "tensor copies", "aten::clone": "tensor copies"}.get(name, "other")


@contextlib.contextmanager
def _stderr_fd_silenced():
    """The profiler's C++ side writes start/stop lines, and on a CUDA build without a GPU a failed device
    count, straight to file descriptor 2, even for a CPU-only profile: hide them, Python's errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def step_profile(res: int = 160, channels_last: bool = True, steps: int = 2):
    """Where a bare training step's CPU time goes (``torch.profiler``, self time per operator family):
    a DataFrame of seconds per step and share, largest first.

    Example:
        >>> step_profile(64, steps=1).family.tolist()[:2]  # doctest: +SKIP
    """
    import pandas as pd
    from torch.profiler import ProfilerActivity, profile

    step = _bare_step(res, channels_last)
    step()
    with _stderr_fd_silenced(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    with _stderr_fd_silenced():
        rows = [{"family": _op_family(e.key, e.input_shapes), "seconds": e.self_cpu_time_total / 1e6 / steps}
                for e in prof.key_averages(group_by_input_shape=True)]
    df = pd.DataFrame(rows).groupby("family", as_index=False)["seconds"].sum()
    df["share"] = df.seconds / df.seconds.sum()
    return df.sort_values("seconds", ascending=False, ignore_index=True)
