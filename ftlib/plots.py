"""Every figure: of finished runs (the results DataFrame and its sidecar), of a split's images, of one model's predictions.

Figures of runs take ``df`` = ``ResultStore(path).frame()`` and ``sidecar`` =
``ResultStore(path).sidecar()``; filter ``df`` to one backbone and profile first (rows are
grouped as in ``ftlib.report``, whose tables they draw). Figures of one model take what
``ftlib`` already returns (a split, a model with its ``mean``/``std``, a confusion matrix from
``ftlib.diagnostics``), so a notebook cell is one call. Each plot draws into ``ax`` when given.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.ticker import MaxNLocator

from .diagnostics import logits_at
from .errors import FtlibError
from .report import LOSS_CRITERION, block_distance_table, finished, ln_c, strategy_key, summary_table

ANNOTATE_MAX = 20  # confusion matrices up to this many classes get a count in every cell


def _colours(df: pd.DataFrame) -> dict:
    """strategy_label -> colour, in table order, so a strategy keeps its colour in every plot."""
    strategies = df["strategy"] if "strategy" in df else [""] * len(df)
    labels = sorted(set(zip(strategies, df["strategy_label"])), key=lambda p: strategy_key(*p))
    return {label: f"C{i % 10}" for i, (_, label) in enumerate(labels)}


def _no_runs(ax, what: str = "runs"):
    ax.text(0.5, 0.5, f"no finished {what}", ha="center", va="center", transform=ax.transAxes)
    return ax


def _panels(n: int, ax=None):
    """A Figure with ``n`` panels (3 per row), or the caller's axes (one per panel)."""
    if ax is not None:
        axes = list(np.ravel(ax))
        if len(axes) < n:
            raise FtlibError(f"this plot needs {n} axes (one per panel) but got {len(axes)}")
        return axes[0].figure, axes
    cols, rows = min(n, 3), math.ceil(n / 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False,
                             layout="constrained")
    for extra in axes.ravel()[n:]:
        extra.set_visible(False)
    return fig, list(axes.ravel())


def per_class(df: pd.DataFrame) -> pd.Series:
    """Labelled training images per class of each row: the shots, or for ``shots=all`` the mean class size.

    >>> per_class(pd.DataFrame({"shots": [5, "all"], "n_train": [10, 244], "num_classes": [2, 2]})).tolist()
    [5.0, 122.0]
    """
    def one(row):
        s = str(row["shots"])
        return float(s) if s.isdigit() else float(row["n_train"]) / float(row["num_classes"])
    return df.apply(one, axis=1) if len(df) else pd.Series(dtype=float)


def plot_acc_vs_shots(df: pd.DataFrame, ax=None):
    """Test accuracy against labelled images per class, one panel per dataset, one line per strategy_label.

    x is logarithmic ("all" sits at its mean images per class); error bars are the standard error of
    the mean over seeds (std / sqrt(seeds)). Returns the Figure; ``ax`` may be an array of Axes, one
    per dataset.

    Example:
        >>> fig = plot_acc_vs_shots(ResultStore("results/demo").frame())  # doctest: +SKIP
    """
    ok = finished(df)
    table, colours = summary_table(ok, formatted=False).reset_index(), _colours(ok)
    sizes = {}
    if len(ok):
        sizes = per_class(ok).groupby([ok["dataset"], ok["shots"].map(str)]).mean().to_dict()
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = _panels(max(1, len(datasets)), ax)
    if not datasets:
        _no_runs(axes[0])
    for a, dataset in zip(axes, datasets):
        sub = table[table["dataset"] == dataset]
        for label, colour in colours.items():
            if len(line := sub[sub["strategy_label"] == label]):
                x = [sizes[(dataset, str(s))] for s in line["shots"]]
                se = (line["test_acc_std"] / np.sqrt(line["n_seeds"].clip(lower=1))).fillna(0.0)
                a.errorbar(x, line["test_acc_mean"], yerr=se, color=colour, marker="o", capsize=3, label=label)
        ticks = sorted({sizes[(dataset, str(s))] for s in sub["shots"]})
        a.set_xscale("log")
        a.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
        a.minorticks_off()
        a.set(title=dataset, xlabel="labelled images per class", ylabel="test accuracy (mean ± SE)")
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    return fig


def plot_acc_vs_time(df: pd.DataFrame, ax=None):
    """Mean test accuracy against mean training time, one point per dataset × shots × strategy.

    Colour is the strategy_label, marker the dataset; x is log-scaled because strategies
    differ in cost by orders of magnitude. Returns the Figure.

    Example:
        >>> fig = plot_acc_vs_time(ResultStore("results/demo").frame())  # doctest: +SKIP
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    table = summary_table(finished(df), formatted=False).reset_index()
    if not len(table):
        return _no_runs(ax).figure
    markers = dict(zip(dict.fromkeys(table["dataset"]), "osD^vP*X"))
    for label, colour in _colours(finished(df)).items():
        sub = table[table["strategy_label"] == label]
        for dataset, m in markers.items():
            pts = sub[sub["dataset"] == dataset]
            ax.scatter(pts["train_seconds"], pts["test_acc_mean"], color=colour, marker=m)
        ax.scatter([], [], color=colour, label=label)  # one legend entry per strategy
    for dataset, m in markers.items() if len(markers) > 1 else []:
        ax.scatter([], [], color="grey", marker=m, label=dataset)
    ax.set_xscale("log")
    ax.set(xlabel="training time (s, mean over seeds)", ylabel="test accuracy (mean)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return ax.figure


def plot_block_distance(df: pd.DataFrame, sidecar: dict, ax=None):
    """Mean relative weight distance ||w - w0|| / ||w0|| per block, one line per strategy_label.

    The means are ``ftlib.report.block_distance_table``'s; lines follow the tables' strategy order.
    Blocks run stem -> head in the order the records store them. y is log-scaled, so a
    frozen block (distance exactly 0) leaves a gap in its line. Returns the Figure.

    Example:
        >>> store = ResultStore("results/demo")  # doctest: +SKIP
        >>> fig = plot_block_distance(store.frame(), store.sidecar())  # doctest: +SKIP
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ok = finished(df)
    table = block_distance_table(ok, sidecar) if len(ok) else pd.DataFrame()
    colours = {label: c for label, c in _colours(ok).items() if label in table and table[label].notna().any()}
    if not colours:
        return _no_runs(ax, "runs with block distances").figure
    x = np.arange(len(table))
    for label, colour in colours.items():
        mean = table[label].to_numpy(float)
        ax.plot(x, np.where(mean > 0, mean, np.nan), marker="o", color=colour, label=label)
    ax.set_xticks(x, list(table.index), rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set(xlabel="block (stem → head)", ylabel="relative distance ||w−w0||/||w0||")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return ax.figure


def plot_learning_curves(df: pd.DataFrame, sidecar: dict, ax=None, max_panels: int = 6):
    """Training loss per epoch as a fraction of ln C (mean over seeds), one panel per dataset × shots.

    The dashed line is the ``LOSS_CRITERION`` a run must reach to count as trained; 1.0 is chance.

    Shows the first ``max_panels`` (dataset, shots) pairs in table order, so a big sweep
    stays readable. Returns the Figure; ``ax`` may be an array of Axes, one per panel.

    Example:
        >>> store = ResultStore("results/demo")  # doctest: +SKIP
        >>> fig = plot_learning_curves(store.frame(), store.sidecar())  # doctest: +SKIP
    """
    ok = finished(df)
    colours = _colours(ok)
    groups = list(dict.fromkeys(k[:2] for k in summary_table(ok, formatted=False).index))[:max_panels]
    fig, axes = _panels(max(1, len(groups)), ax)
    if not groups:
        _no_runs(axes[0])
    for a, (dataset, shots) in zip(axes, groups):
        sub = ok[(ok["dataset"] == dataset) & (ok["shots"].map(str) == str(shots))]
        for label, colour in colours.items():
            runs = sub[sub["strategy_label"] == label]
            n_classes = pd.to_numeric(runs["num_classes"], errors="coerce").max() if "num_classes" in runs else np.nan
            scale = 1.0 if math.isnan(ln_c(n_classes)) else ln_c(n_classes)
            curves = [[v / scale for v in c] if c else c
                      for c in (sidecar.get(rid, {}).get("curves", {}).get("train_loss") for rid in runs["run_id"])]
            if curves := [c for c in curves if c]:
                # Pad with NaN so runs of different length still average epoch by epoch.
                grid = np.full((len(curves), max(map(len, curves))), np.nan)
                for i, c in enumerate(curves):
                    grid[i, :len(c)] = c
                epochs = np.arange(1, grid.shape[1] + 1)
                a.plot(epochs, np.nanmean(grid, axis=0), color=colour, label=label)
        a.set(title=f"{dataset}, shots={shots}", xlabel="epoch", ylabel="training loss / ln C")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.axhline(LOSS_CRITERION, color="k", ls="--", lw=0.8)  # a run below the line counts as trained
            a.legend(fontsize="small")
        else:  # finished runs whose curves the store lacks (a sidecar lost in transfer) leave no blank panel
            _no_runs(a, "runs with learning curves")
    return fig


def _hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` (C = 1 or 3) -> uint8 ``[N, H, W, 3]`` for ``imshow``."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.permute(0, 2, 3, 1).numpy()


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
    pred = logits_at(model, split, mean, std, index).argmax(1)
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


def plot_confusion(cm: pd.DataFrame, ax=None):
    """Draw a confusion matrix (``ftlib.diagnostics.confusion``) with row-normalised colours and raw counts.

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
