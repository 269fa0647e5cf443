"""Pictures and small tables for the notebooks: sample grids, block maps, predictions, confusion matrices.

Each function takes what ``ftlib`` already returns (a split, a ``Backbone``, a model with
its ``mean``/``std``) and returns a DataFrame, an Axes or a Figure, so a notebook cell is
one call. Nothing here trains; the predictions come from ``ftlib.train.predict_logits``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .datasets import ImageTensors
from .errors import FtlibError
from .train import predict_logits

TOP = 5  # ImageNet top-k shown by ``imagenet_top5``
ANNOTATE_MAX = 20  # confusion matrices up to this many classes get a count in every cell


def _hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` (C = 1 or 3) -> uint8 ``[N, H, W, 3]`` for ``imshow``."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.permute(0, 2, 3, 1).numpy()


def _subset(split, index) -> ImageTensors:
    """The images at ``index`` as a split that ``predict_logits`` can read."""
    index = torch.as_tensor(np.asarray(index, dtype=np.int64))
    return ImageTensors(split.images[index], split.labels[index], split.classes, split.resolution)


def _spread(n_items: int, n: int) -> np.ndarray:
    """``n`` positions spread evenly over ``n_items`` (splits are sorted by class)."""
    return np.unique(np.linspace(0, n_items - 1, min(n, n_items)).round().astype(int))


def plot_samples(split, per_class: int = 4, max_classes: int = 10, ax=None):
    """Draw the first ``per_class`` images of each class as one mosaic, a row per class.

    With more than ``max_classes`` classes, ``max_classes`` of them are taken evenly
    spaced over the class list (so Caltech-101 shows more than its first ten letters).

    Args:
        split: An ``ImageTensors`` split (``ds.train``, ``ds.test``).
        per_class: Images per row.
        max_classes: Rows at most.
        ax: Axes to draw into; a new figure when None.

    Returns:
        The Axes.

    Example:
        >>> ds = ftlib.load_dataset("hymenoptera", resolution=64)  # doctest: +SKIP
        >>> ax = plot_samples(ds.train, per_class=6)  # doctest: +SKIP
    """
    classes = _spread(len(split.classes), max_classes)
    side = split.images.shape[-1]
    pad = max(1, side // 16)
    mosaic = np.full((len(classes) * (side + pad), per_class * (side + pad), 3), 255, np.uint8)
    for row, c in enumerate(classes):
        idx = torch.nonzero(split.labels == int(c)).flatten()[:per_class]
        for col, img in enumerate(_hwc(split.images[idx])):
            y, x = row * (side + pad), col * (side + pad)
            mosaic[y:y + side, x:x + side] = img
    if ax is None:
        _, ax = plt.subplots(figsize=(1.3 * per_class + 1.5, 1.3 * len(classes) + 0.4), layout="constrained")
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([r * (side + pad) + side / 2 for r in range(len(classes))], [split.classes[c] for c in classes])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


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
    logits = predict_logits(bb.model, _subset(split, index), bb.mean, bb.std)
    if logits.shape[1] != 1000:
        raise FtlibError(f"imagenet_top5 needs the 1000-class ImageNet head, this model has {logits.shape[1]} "
                         f"outputs; load it with ftlib.load_backbone(name) (num_classes=None)")
    probs, top = torch.softmax(logits, 1).topk(TOP, dim=1)
    rows = [(int(i), split.classes[int(split.labels[i])], rank + 1, int(c),
             info.index_to_description(int(c)).split(",")[0], float(p))
            for i, ps, cs in zip(index, probs, top) for rank, (p, c) in enumerate(zip(ps, cs))]
    df = pd.DataFrame(rows, columns=["image", "true", "rank", "imagenet_class", "label", "probability"])
    return df.set_index(["image", "true", "rank"])


def plot_predictions(model, split, mean, std, classes, n: int = 12, ax=None):
    """A grid of ``n`` images spread over ``split``, titled predicted / true; wrong ones in red.

    Args:
        model: A classifier over ``classes`` (``bb.model`` after training, or a reloaded one).
        split: Usually ``ds.test``.
        mean: The normalisation the weights expect (``bb.mean``).
        std: Likewise (``bb.std``).
        classes: Class names, indexed by the model's outputs.
        n: Number of images.
        ax: An array of at least ``n`` Axes; a new figure (6 per row) when None.

    Returns:
        The Figure.

    Example:
        >>> fig = plot_predictions(bb.model, ds.test, bb.mean, bb.std, ds.classes)  # doctest: +SKIP
    """
    index = _spread(len(split), n)
    pred = predict_logits(model, _subset(split, index), mean, std).argmax(1)
    if ax is None:
        cols = min(6, len(index))
        rows = -(-len(index) // cols)
        fig, ax = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.2 * rows), squeeze=False, layout="constrained")
    axes = list(np.ravel(ax))
    if len(axes) < len(index):
        raise FtlibError(f"plot_predictions needs {len(index)} axes, got {len(axes)}")
    for a, img, i, p in zip(axes, _hwc(split.images[index]), index, pred.tolist()):
        true = int(split.labels[i])
        a.imshow(img, interpolation="nearest")
        a.set_title(f"pred: {classes[p]}\ntrue: {classes[true]}", fontsize=8,
                    color="black" if p == true else "red")
        a.axis("off")
    for a in axes[len(index):]:
        a.axis("off")
    return axes[0].figure


def confusion(model, split, mean, std) -> pd.DataFrame:
    """Confusion matrix of ``model`` on ``split``: rows are true classes, columns predictions.

    ``cm.values.trace() / cm.values.sum()`` is the accuracy ``ftlib.evaluate`` reports.

    Example:
        >>> cm = confusion(bb.model, ds.test, bb.mean, bb.std)  # doctest: +SKIP
        >>> int(cm.values.sum()) == len(ds.test)  # doctest: +SKIP
        True
    """
    k = len(split.classes)
    pred = predict_logits(model, split, mean, std).argmax(1)
    counts = torch.bincount(split.labels * k + pred, minlength=k * k).reshape(k, k).numpy()
    return pd.DataFrame(counts, index=pd.Index(split.classes, name="true"),
                        columns=pd.Index(split.classes, name="predicted"))


def plot_confusion(cm: pd.DataFrame, ax=None):
    """Draw a confusion matrix (from ``confusion``) with row-normalised colours and raw counts.

    Colours are each row's share (recall per class), so rare and common classes read
    alike; up to 20 classes, every cell also shows its count.

    Example:
        >>> ax = plot_confusion(confusion(bb.model, ds.test, bb.mean, bb.std))  # doctest: +SKIP
    """
    counts = cm.to_numpy()
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    k = len(cm)
    if ax is None:
        side = min(9.0, 2.5 + 0.45 * k)
        _, ax = plt.subplots(figsize=(side + 1, side), layout="constrained")
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    ax.set_xticks(range(k), list(cm.columns), rotation=45 if k > 2 else 0, ha="right" if k > 2 else "center")
    ax.set_yticks(range(k), list(cm.index))
    ax.set(xlabel="predicted", ylabel="true")
    if k <= ANNOTATE_MAX:
        for (r, c), v in np.ndenumerate(counts):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8,
                    color="white" if share[r, c] > 0.5 else "black")
    return ax
