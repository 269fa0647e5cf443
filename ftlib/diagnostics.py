"""Tables of one model, and the reads they are made of: blocks, predictions, BatchNorm drift, L2-SP coverage, groups.

Each table is a small read of one model (with its penalty, optimiser groups or a split to
predict) as a pandas DataFrame, so a notebook can print it and assert on it; ``bn_running_stats``
and ``logits_at`` are the raw reads beneath them. Nothing here trains; the predictions come from
``ftlib.train.predict_logits``.

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
from .datasets import ImageTensors
from .errors import FtlibError
from .train import BN_TYPES, predict_logits

STATS = ("running_mean", "running_var")
TOP = 5  # ImageNet top-k shown by ``imagenet_top5``


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


def block_table(bb) -> pd.DataFrame:
    """Parameters per block of ``bb.blocks`` (stem -> head) and their share of the total.

    Example:
        >>> import ftlib
        >>> bb = ftlib.load_backbone("timm/tf_efficientnet_lite0", num_classes=2, pretrained=False)
        >>> int(block_table(bb).iloc[-1]["parameters"])  # the new 2-class head: 1280 x 2 + 2
        2562
    """
    counts = [(name, sum(p.numel() for p in module.parameters())) for name, module in bb.blocks]
    df = pd.DataFrame(counts, columns=["block", "parameters"])
    df["share"] = df["parameters"] / df["parameters"].sum()
    return df


def logits_at(model, split, mean, std, index=None) -> torch.Tensor:
    """The model's logits for the images of ``split`` at positions ``index`` (every image when None)."""
    if index is not None:
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        split = ImageTensors(split.images[index], split.labels[index], split.classes, split.resolution)
    return predict_logits(model, split, mean, std)


def imagenet_top5(bb, split, n: int = 4, index=None) -> pd.DataFrame:
    """The ImageNet head's five most likely labels for some images of ``split``.

    Args:
        bb: A backbone that kept its 1000-class ImageNet head (``num_classes=None``).
        split: Images to label; their own class names go in the ``true`` index level.
        n: How many images: the first ``n`` unless ``index`` is given.
        index: Positions in ``split`` to use instead of the first ``n``.

    Returns:
        One row per (image, true, rank): ``imagenet_class``, ``label`` (the first name of
        ``timm.data.ImageNetInfo``'s description) and ``probability``.

    Example:
        >>> bb = ftlib.load_backbone("timm/tf_efficientnet_lite0")  # doctest: +SKIP
        >>> imagenet_top5(bb, ds.test, index=[0, 150])  # doctest: +SKIP
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    index = np.arange(min(n, len(split))) if index is None else np.asarray(index)
    logits = logits_at(bb.model, split, bb.mean, bb.std, index)
    if logits.shape[1] != 1000:
        raise FtlibError(f"imagenet_top5 needs the 1000-class ImageNet head, this model has {logits.shape[1]} "
                         f"outputs; load it with ftlib.load_backbone(name) (num_classes=None)")
    probs, top = torch.softmax(logits, 1).topk(TOP, dim=1)
    rows = [(int(i), split.classes[int(split.labels[i])], rank + 1, int(c),
             info.index_to_description(int(c)).split(",")[0], float(p))
            for i, ps, cs in zip(index, probs, top) for rank, (p, c) in enumerate(zip(ps, cs))]
    df = pd.DataFrame(rows, columns=["image", "true", "rank", "imagenet_class", "label", "probability"])
    return df.set_index(["image", "true", "rank"])


def confusion(model, split, mean, std) -> pd.DataFrame:
    """Confusion matrix of ``model`` on ``split``: rows are true classes, columns predictions.

    ``cm.values.trace() / cm.values.sum()`` is the accuracy ``ftlib.evaluate`` reports.

    Example:
        >>> cm = confusion(bb.model, ds.test, bb.mean, bb.std)  # doctest: +SKIP
        >>> int(cm.values.sum()) == len(ds.test)  # doctest: +SKIP
        True
    """
    k = len(split.classes)
    pred = logits_at(model, split, mean, std).argmax(1)
    counts = torch.bincount(split.labels * k + pred, minlength=k * k).reshape(k, k).numpy()
    return pd.DataFrame(counts, index=pd.Index(split.classes, name="true"),
                        columns=pd.Index(split.classes, name="predicted"))
