"""Figures of finished runs: pure functions of the results DataFrame (and its sidecar of curves).

``df`` is ``ResultStore(path).frame()``; ``sidecar`` is ``ResultStore(path).sidecar()``. Filter
``df`` to one backbone and profile first (rows are grouped as in ``ftlib.report``). Each plot
returns its Figure and draws into ``ax`` when given.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .errors import FtlibError
from .report import LOSS_CRITERION, finished, strategy_key, summary_table


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

    Blocks run stem -> head in the order the records store them. y is log-scaled, so a
    frozen block (distance exactly 0) leaves a gap in its line. Returns the Figure.

    Example:
        >>> store = ResultStore("results/demo")  # doctest: +SKIP
        >>> fig = plot_block_distance(store.frame(), store.sidecar())  # doctest: +SKIP
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ok, blocks, per_label = finished(df), {}, {}
    colours = _colours(ok)
    for label in colours:
        run_ids = ok.loc[ok["strategy_label"] == label, "run_id"]
        dists = [sidecar.get(rid, {}).get("block_distance") for rid in run_ids]
        if dists := [d for d in dists if d]:
            per_label[label] = dists
            blocks.update(dict.fromkeys(b for d in dists for b in d))  # keeps stem -> head order
    if not per_label:
        return _no_runs(ax, "runs with block distances").figure
    x = np.arange(len(blocks))
    for label, dists in per_label.items():
        mean = np.nanmean([[d.get(b, np.nan) for b in blocks] for d in dists], axis=0)
        ax.plot(x, np.where(mean > 0, mean, np.nan), marker="o", color=colours[label], label=label)
    ax.set_xticks(x, list(blocks), rotation=45, ha="right")
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
            scale = math.log(n_classes) if n_classes and n_classes > 1 else 1.0
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
