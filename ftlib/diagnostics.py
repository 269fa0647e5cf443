"""Diagnostics the tutorials show: BatchNorm statistics drift, per-block weight distances, L2-SP coverage.

Each function is a small pure read of a model, a penalty or a results frame, returning a
pandas DataFrame, so a notebook can print it and assert on it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    >>> before = bn_running_stats(model)
    >>> _ = model.train()(torch.randn(8, 3, 4, 4))  # train mode: the running statistics move
    >>> bool(bn_drift(model, before)["identical"].all())
    False
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from .backbones import Backbone
from .train import BN_TYPES

STATS = ("running_mean", "running_var")


def bn_running_stats(model: nn.Module) -> dict:
    """A detached copy of every BatchNorm layer's running mean and variance.

    Args:
        model: Any module; BatchNorm layers without running statistics are skipped.

    Returns:
        ``{layer_name: {"running_mean": tensor, "running_var": tensor}}`` in model order.

    Example:
        >>> stats = bn_running_stats(nn.Sequential(nn.BatchNorm1d(3)))
        >>> list(stats), stats["0"]["running_var"].tolist()
        (['0'], [1.0, 1.0, 1.0])
    """
    return {name: {s: getattr(m, s).detach().clone() for s in STATS}
            for name, m in model.named_modules()
            if isinstance(m, BN_TYPES) and m.running_mean is not None}


def bn_drift(model, reference: dict) -> pd.DataFrame:
    """How far each BatchNorm layer's running statistics moved from ``reference``.

    Args:
        model: An ``nn.Module`` or an ``ftlib.Backbone``; with a Backbone, each layer is
            labelled with its block (``stem``, ``blocks.3``, ...).
        reference: ``bn_running_stats`` of the starting model (same architecture).

    Returns:
        One row per BatchNorm layer: ``block``, ``layer``, ``trainable`` (any of its
        parameters requires grad), ``mean_drift`` and ``var_drift`` (largest absolute
        change of the running mean / variance), ``mean_shift`` (largest change of the mean
        in units of the reference standard deviation, comparable across layers) and
        ``identical`` (both bit-identical).

    Example:
        >>> bn = nn.Sequential(nn.BatchNorm1d(2))
        >>> ref = bn_running_stats(bn)
        >>> with torch.no_grad():
        ...     _ = bn[0].running_mean.add_(0.5)
        >>> bn_drift(bn, ref)[["layer", "mean_drift", "identical"]].values.tolist()
        [['0', 0.5, False]]
    """
    block_of = {}
    if isinstance(model, Backbone):  # its block views hold the very same modules
        block_of = {id(m): name for name, view in model.blocks for m in view.modules()}
        model = model.model
    rows = []
    for name, m in model.named_modules():
        if name not in reference:
            continue
        now, ref = {s: getattr(m, s).detach() for s in STATS}, reference[name]
        shift = (now["running_mean"].float() - ref["running_mean"].float()).abs()
        rows.append({
            "block": block_of.get(id(m), ""), "layer": name,
            "trainable": any(p.requires_grad for p in m.parameters(recurse=False)),
            "mean_drift": float(shift.max()),
            "var_drift": float((now["running_var"].float() - ref["running_var"].float()).abs().max()),
            "mean_shift": float((shift / (ref["running_var"].float() + m.eps).sqrt()).max()),
            "identical": all(torch.equal(now[s], ref[s]) for s in STATS),
        })
    return pd.DataFrame(rows, columns=["block", "layer", "trainable", "mean_drift", "var_drift", "mean_shift",
                                       "identical"])


def block_distance_table(df: pd.DataFrame, sidecar: dict, by: str = "strategy_label") -> pd.DataFrame:
    """Mean relative weight distance ||w - w0|| / ||w0|| per block over runs, one column per ``by`` value.

    The numbers are the ``block_distance`` each run recorded (``ftlib.runs.block_distances``);
    this only averages them over seeds. Filter ``df`` to one dataset and shot count first.

    Args:
        df: Results frame (``ftlib.load_or_run`` or ``ResultStore.frame()``), ok runs only.
        sidecar: ``{run_id: {"block_distance": {block: distance}}}`` from the same store.
        by: Column whose values become the table's columns.

    Returns:
        DataFrame indexed by block (stem -> head), columns in order of first appearance.

    Example:
        >>> df = pd.DataFrame({"run_id": ["a", "b"], "strategy_label": ["full", "full"]})
        >>> side = {"a": {"block_distance": {"stem": 0.1, "head": 1.0}},
        ...         "b": {"block_distance": {"stem": 0.3, "head": 1.0}}}
        >>> round(float(block_distance_table(df, side).loc["stem", "full"]), 3)
        0.2
    """
    columns, blocks = {}, {}
    for value, grp in df.groupby(by, sort=False):
        dists = [sidecar[r]["block_distance"] for r in grp["run_id"] if sidecar.get(r, {}).get("block_distance")]
        blocks.update(dict.fromkeys(b for d in dists for b in d))  # stem -> head, as recorded
        columns[value] = dists
    table = pd.DataFrame({value: [np.mean([d[b] for d in dists if b in d]) if dists else np.nan for b in blocks]
                          for value, dists in columns.items()}, index=list(blocks))
    table.index.name = "block"
    return table


def l2sp_coverage(bb, penalty) -> pd.DataFrame:
    """Which parameters of ``bb`` an ``ftlib.L2SPPenalty`` acts on, counted per block.

    Returns:
        One row per block: ``to_w0`` (tensors pulled towards their starting values),
        ``to_zero`` (head tensors under plain L2), ``free`` (tensors not penalised, e.g.
        BatchNorm gamma/beta and biases with ``include_bn_bias=False``) and the number of
        scalars in each (``*_params``).

    Example:
        >>> table = l2sp_coverage(bb, ftlib.L2SPPenalty.for_backbone(bb, 0.1, 0.01))  # doctest: +SKIP
    """
    sp, head = {id(p) for p in penalty.sp}, {id(p) for p in penalty.head}
    rows = []
    for block, view in bb.blocks:
        row = {"block": block, "to_w0": 0, "to_zero": 0, "free": 0,
               "to_w0_params": 0, "to_zero_params": 0, "free_params": 0}
        for p in view.parameters():
            kind = "to_w0" if id(p) in sp else "to_zero" if id(p) in head else "free"
            row[kind] += 1
            row[f"{kind}_params"] += p.numel()
        rows.append(row)
    return pd.DataFrame(rows).set_index("block")


def group_table(groups: list, penalty=None) -> pd.DataFrame:
    """The optimiser groups of ``ftlib.runs.param_groups`` as a table, with the penalty's coverage.

    Returns:
        One row per group: ``name``, ``lr``, ``weight_decay``, ``tensors``, ``params`` and
        ``penalised`` (tensors of the group the penalty covers; 0 without a penalty).

    Example:
        >>> w = nn.Parameter(torch.ones(2, 2))
        >>> group_table([{"name": "body", "params": [w], "lr": 0.1, "weight_decay": 0.0}]).params.tolist()
        [4]
    """
    covered = penalty.covered() if penalty is not None else set()
    return pd.DataFrame([{"name": g.get("name", str(i)), "lr": g["lr"], "weight_decay": g["weight_decay"],
                          "tensors": len(g["params"]), "params": sum(p.numel() for p in g["params"]),
                          "penalised": sum(id(p) in covered for p in g["params"])}
                         for i, g in enumerate(groups)])
