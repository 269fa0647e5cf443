"""Tables and plots of finished runs: pure functions of the results DataFrame.

``df`` is ``ResultStore(path).frame()`` (or ``pd.DataFrame(records)``); ``sidecar`` is
``ResultStore(path).sidecar()``. Rows are grouped by (dataset, shots, strategy_label)
only, so filter ``df`` to one backbone and profile first. Plots return their Axes (a
Figure when they have several panels) and draw into ``ax`` when given.
"""
from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .errors import FtlibError
from .store import ResultStore

KEYS = ["dataset", "shots", "strategy_label"]
# Table and legend order: from least to most adapted weights, as the tutorials present them.
STRATEGY_ORDER = ["scratch", "linear_probe", "partial", "l2sp", "lp_ft", "full"]
# Config columns that must agree inside one table cell; a mix means df was not filtered.
SAME_WITHIN_GROUP = ["backbone", "profile", "resolution", "epochs", "data_source"]  # data_source: never mix copies
NUMERIC_COLUMNS = ["n_seeds", "diverged", "test_acc_mean", "test_acc_std", "val_acc_mean",
                   "train_seconds", "trainable_params", "peak_mem_mb"]
PLOTS = ["acc_vs_shots", "acc_vs_time", "block_distance", "learning_curves"]


def _shots_key(shots) -> tuple:
    """Sort key: numeric shots ascending, then "all" (a CSV may give "5" or 5)."""
    s = str(shots)
    return (0, int(s)) if s.isdigit() else (1, s)


def _strategy_key(strategy, label) -> tuple:
    rank = STRATEGY_ORDER.index(strategy) if strategy in STRATEGY_ORDER else len(STRATEGY_ORDER)
    return rank, str(label)


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


def _colours(df: pd.DataFrame) -> dict:
    """strategy_label -> colour, in table order, so a strategy keeps its colour in every plot."""
    strategies = df["strategy"] if "strategy" in df else [""] * len(df)
    labels = sorted(set(zip(strategies, df["strategy_label"])), key=lambda p: _strategy_key(*p))
    return {label: f"C{i % 10}" for i, (_, label) in enumerate(labels)}


def summary_table(df: pd.DataFrame, formatted: bool = True) -> pd.DataFrame:
    """One row per (dataset, shots, strategy_label): mean ± std of test accuracy over seeds.

    Only ``status == "ok"`` runs count toward means; ``diverged`` counts the others.
    Std uses ddof=1 (sample std over seeds) and is NaN for a single seed.

    Args:
        df: Results frame, one row per run.
        formatted: If True, put a ``test_acc`` column of strings ``"0.912 ± 0.013"``
            (``"0.912 ± –"`` for one seed) in front of the numeric columns.

    Returns:
        DataFrame indexed by (dataset, shots, strategy_label), shots ascending with "all"
        last, with columns ``NUMERIC_COLUMNS`` (``train_seconds`` and ``peak_mem_mb``
        are means over ok runs).

    Example:
        >>> df = pd.DataFrame({"dataset": "toy", "shots": 5, "strategy": "full",
        ...                    "strategy_label": "full", "status": "ok",
        ...                    "test_acc": [0.8, 0.9], "val_acc": 0.85})
        >>> summary_table(df).loc[("toy", 5, "full"), "test_acc"]
        '0.850 ± 0.071'
    """
    rows = {}
    if len(df):
        # Group on str(shots): ints and "all" in one column cannot be sorted by pandas.
        for (dataset, shots, label), grp in df.groupby(
                [df["dataset"], df["shots"].map(str), df["strategy_label"]], sort=False):
            strategy = grp["strategy"].iloc[0] if "strategy" in grp else ""
            order = (dataset, _shots_key(shots), _strategy_key(strategy, label))
            rows[order] = ((dataset, int(shots) if shots.isdigit() else shots, label), _summarise(grp))
    keys, values = zip(*[rows[o] for o in sorted(rows)]) if rows else ([], [])
    index = pd.MultiIndex.from_tuples(keys, names=KEYS) if keys else \
        pd.MultiIndex.from_arrays([[], [], []], names=KEYS)
    table = pd.DataFrame(list(values), index=index, columns=NUMERIC_COLUMNS)
    if formatted:
        cells = [_pm(m, sd) for m, sd in zip(table["test_acc_mean"], table["test_acc_std"])]
        table.insert(0, "test_acc", cells)
    return table


def _summarise(grp: pd.DataFrame) -> dict:
    """The numbers of one table cell: all seeds of one config."""
    mixed = [c for c in SAME_WITHIN_GROUP if c in grp and grp[c].nunique() > 1]
    if mixed:
        first = grp.iloc[0]
        warnings.warn(f"{first['dataset']}/shots={first['shots']}/{first['strategy_label']} mixes "
                      f"several {', '.join(mixed)}; filter df before summarising", stacklevel=3)
    ok = _ok(grp)

    def col(name):  # the mean of no runs and the std of one run are NaN, as wanted
        return pd.to_numeric(ok[name]) if name in ok else pd.Series(dtype=float)

    # Trainable parameters are a property of the config, so diverged runs tell it too.
    params = grp["trainable_params"].dropna() if "trainable_params" in grp else []
    return {
        "n_seeds": len(ok), "diverged": len(grp) - len(ok),
        "test_acc_mean": float(col("test_acc").mean()),
        "test_acc_std": float(col("test_acc").std(ddof=1)),
        "val_acc_mean": float(col("val_acc").mean()),
        "train_seconds": float(col("train_seconds").mean()),
        "trainable_params": int(params.iloc[0]) if len(params) else math.nan,
        "peak_mem_mb": float(col("peak_mem_mb").mean()),
    }


LOSS_CRITERION = 0.35  # a gradient-trained run "trains" when its final training loss is <= 0.35 ln C


def budget_table(df: pd.DataFrame) -> pd.DataFrame:
    """What each cell's runs were given and how far they trained, to read every accuracy in its light.

    One row per (dataset, shots, strategy_label): labelled images per run (train + val, every label
    a run reads), optimiser steps, final training loss as a fraction of ln C (chance level; mean
    over seeds and the worst seed), the selected epoch / epochs, and whether the cell trains (mean
    final loss <= ``LOSS_CRITERION`` ln C; the probe is closed-form and scratch is exempt).

    Example:
        >>> df = pd.DataFrame({"dataset": "toy", "shots": 5, "strategy": "full", "strategy_label": "full",
        ...                    "status": "ok", "n_labelled": 10, "num_classes": 2, "steps": 40, "epochs": 6,
        ...                    "selected_epoch": 6, "final_train_loss": [0.1, 0.2]})
        >>> round(float(budget_table(df).loc[("toy", 5, "full"), "loss / ln C"]), 3)
        0.216
    """
    rows = {}
    ok = _ok(df)
    for (dataset, shots, label), grp in ok.groupby([ok["dataset"], ok["shots"].map(str), ok["strategy_label"]],
                                                   sort=False):
        strategy = grp["strategy"].iloc[0] if "strategy" in grp else ""
        num = lambda c: pd.to_numeric(grp[c], errors="coerce") if c in grp else pd.Series(dtype=float)  # noqa: E731
        n_classes = num("num_classes").max()
        frac = num("final_train_loss") / math.log(n_classes) if n_classes and n_classes > 1 else num("final_train_loss") * np.nan
        closed = strategy == "linear_probe"
        if closed:
            verdict = "closed form"
        elif strategy == "scratch":
            verdict = "exempt"
        else:
            verdict = "yes" if frac.mean() <= LOSS_CRITERION else "NO"
        sel = "–" if closed else f"{num('selected_epoch').mean():.0f} / {num('epochs').mean():.0f}"
        order = (dataset, _shots_key(shots), _strategy_key(strategy, label))
        rows[order] = ((dataset, int(shots) if shots.isdigit() else shots, label), {
            "labelled": int(num("n_labelled").max()) if num("n_labelled").notna().any() else math.nan,
            "steps": math.nan if closed else float(num("steps").mean()),
            "loss / ln C": math.nan if closed else float(frac.mean()),
            "worst seed": math.nan if closed else float(frac.max()),
            "epoch kept": sel, "trains": verdict})
    keys, values = zip(*[rows[o] for o in sorted(rows)]) if rows else ([], [])
    index = pd.MultiIndex.from_tuples(keys, names=KEYS) if keys else pd.MultiIndex.from_arrays([[], [], []], names=KEYS)
    return pd.DataFrame(list(values), index=index,
                        columns=["labelled", "steps", "loss / ln C", "worst seed", "epoch kept", "trains"])


def _pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "–"  # every seed diverged
    return f"{mean:.3f} ± {'–' if pd.isna(std) else f'{std:.3f}'}"


def _cell(value, column: str) -> str:
    if isinstance(value, str):
        return value.replace("|", "\\|")  # a bare | would split the markdown cell
    if pd.isna(value):
        return "–"
    if column in ("trainable_params", "labelled", "steps") or isinstance(value, (int, np.integer)):
        return f"{int(round(value)):,}"
    if column in ("loss / ln C", "worst seed"):
        return f"{value:.2f}"
    return f"{value:,.{ {'train_seconds': 1, 'peak_mem_mb': 0}.get(column, 3) }f}"


def to_markdown(table: pd.DataFrame, columns: list | None = None) -> str:
    """Render a summary table as markdown, one sub-table per dataset × shots.

    Args:
        table: The result of ``summary_table`` (formatted or not).
        columns: Columns to show; by default all, except the mean/std columns when the
            formatted ``test_acc`` column already says them.

    Example:
        >>> df = pd.DataFrame({"dataset": "toy", "shots": "all", "strategy_label": "full",
        ...                    "status": "ok", "test_acc": [0.9], "val_acc": 0.9})
        >>> print(to_markdown(summary_table(df)).splitlines()[0])
        ### toy, shots=all
    """
    if not len(table):
        return "_No finished runs._\n"
    if columns is None:
        hide = {"test_acc_mean", "test_acc_std"} if "test_acc" in table else set()
        columns = [c for c in table.columns if c not in hide]
    row = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    align = [":---"] + [":---:" if c == "test_acc" else "---:" for c in columns]
    parts = []
    for (dataset, shots), grp in table.groupby(level=[0, 1], sort=False):
        lines = [f"### {dataset}, shots={shots}", "", row(["strategy", *columns]), row(align)]
        lines += [row([_cell(label, "")] + [_cell(r[c], c) for c in columns])
                  for (_, _, label), r in grp.iterrows()]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


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


def plot_acc_vs_shots(df: pd.DataFrame, ax=None):
    """Test accuracy against shots, one panel per dataset, one line per strategy_label.

    x is categorical (shots ascending, "all" last); error bars are the std over seeds.
    Returns the Figure; ``ax`` may be an array of Axes, one per dataset.

    Example:
        >>> fig = plot_acc_vs_shots(ResultStore("results/demo").frame())  # doctest: +SKIP
    """
    table, colours = summary_table(_ok(df), formatted=False).reset_index(), _colours(_ok(df))
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = _panels(max(1, len(datasets)), ax)
    if not datasets:
        _no_runs(axes[0])
    for a, dataset in zip(axes, datasets):
        sub = table[table["dataset"] == dataset]
        ticks = list(dict.fromkeys(sub["shots"]))  # summary_table already sorts "all" last
        for label, colour in colours.items():
            if len(line := sub[sub["strategy_label"] == label]):
                a.errorbar([ticks.index(s) for s in line["shots"]], line["test_acc_mean"], color=colour,
                           yerr=line["test_acc_std"].fillna(0.0), marker="o", capsize=3, label=label)
        a.set_xticks(range(len(ticks)), [str(s) for s in ticks])
        a.set(title=dataset, xlabel="shots per class", ylabel="test accuracy")
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    return fig


def plot_acc_vs_time(df: pd.DataFrame, ax=None):
    """Mean test accuracy against mean training time, one point per dataset × shots × strategy.

    Colour is the strategy_label, marker the dataset; x is log-scaled because strategies
    differ in cost by orders of magnitude. Returns the Axes.

    Example:
        >>> ax = plot_acc_vs_time(ResultStore("results/demo").frame())  # doctest: +SKIP
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    table = summary_table(_ok(df), formatted=False).reset_index()
    if not len(table):
        return _no_runs(ax)
    markers = dict(zip(dict.fromkeys(table["dataset"]), "osD^vP*X"))
    for label, colour in _colours(_ok(df)).items():
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
    return ax


def plot_block_distance(df: pd.DataFrame, sidecar: dict, ax=None):
    """Mean relative weight distance ||w - w0|| / ||w0|| per block, one line per strategy_label.

    Blocks run stem -> head in the order the records store them. y is log-scaled, so a
    frozen block (distance exactly 0) leaves a gap in its line. Returns the Axes.

    Example:
        >>> store = ResultStore("results/demo")  # doctest: +SKIP
        >>> ax = plot_block_distance(store.frame(), store.sidecar())  # doctest: +SKIP
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ok, blocks, per_label = _ok(df), {}, {}
    colours = _colours(ok)
    for label in colours:
        run_ids = ok.loc[ok["strategy_label"] == label, "run_id"]
        dists = [sidecar.get(rid, {}).get("block_distance") for rid in run_ids]
        if dists := [d for d in dists if d]:
            per_label[label] = dists
            blocks.update(dict.fromkeys(b for d in dists for b in d))  # keeps stem -> head order
    if not per_label:
        return _no_runs(ax, "runs with block distances")
    x = np.arange(len(blocks))
    for label, dists in per_label.items():
        mean = np.nanmean([[d.get(b, np.nan) for b in blocks] for d in dists], axis=0)
        ax.plot(x, np.where(mean > 0, mean, np.nan), marker="o", color=colours[label], label=label)
    ax.set_xticks(x, list(blocks), rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set(xlabel="block (stem → head)", ylabel="relative distance ||w−w0||/||w0||")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return ax


def plot_learning_curves(df: pd.DataFrame, sidecar: dict, ax=None, max_panels: int = 6):
    """Training loss per epoch as a fraction of ln C (mean over seeds), one panel per dataset × shots.

    The dashed line is the ``LOSS_CRITERION`` a run must reach to count as trained; 1.0 is chance.

    Shows the first ``max_panels`` (dataset, shots) pairs in table order, so a big sweep
    stays readable. Returns the Figure; ``ax`` may be an array of Axes, one per panel.

    Example:
        >>> store = ResultStore("results/demo")  # doctest: +SKIP
        >>> fig = plot_learning_curves(store.frame(), store.sidecar())  # doctest: +SKIP
    """
    ok = _ok(df)
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


def write_summary(store_dir, run_ids=None) -> dict:
    """Write ``summary.md`` and the four PNG plots of a results directory into it.

    ``run_ids`` restricts them to those runs (the README's store also holds notebook runs).

    Returns:
        ``{"summary": path, "acc_vs_shots": path, ...}`` for every file written.

    Example:
        >>> sorted(write_summary("results/demo"))  # doctest: +SKIP
        ['acc_vs_shots', 'acc_vs_time', 'block_distance', 'learning_curves', 'summary']
    """
    store = ResultStore(store_dir)
    df, sidecar = store.frame(), store.sidecar()
    if run_ids is not None and len(df):
        keep = set(run_ids)
        df = df[df.run_id.isin(keep)].reset_index(drop=True)
        sidecar = {k: v for k, v in sidecar.items() if k in keep}
    figures = {
        "acc_vs_shots": lambda: plot_acc_vs_shots(df),
        "acc_vs_time": lambda: plot_acc_vs_time(df).figure,
        "block_distance": lambda: plot_block_distance(df, sidecar).figure,
        "learning_curves": lambda: plot_learning_curves(df, sidecar),
    }
    paths, failed = {}, []
    for name, draw in figures.items():
        fig = None
        try:  # a plot that cannot be drawn or written must not cost the table: summary.md is written anyway
            fig = draw()
            fig.savefig(store.path / f"{name}.png", dpi=120)
            paths[name] = store.path / f"{name}.png"
        except Exception as e:
            failed.append(name)
            warnings.warn(f"could not write {store.path / (name + '.png')} ({type(e).__name__}: {e}); "
                          "summary.md is written without it", stacklevel=2)
        finally:
            if fig is not None:
                plt.close(fig)  # a sweep writing many summaries must not pile up open figures
    md = [f"# Results: {store.path.name}", "",
          f"{len(df)} finished runs. Test accuracy is mean ± std over seeds; "
          "diverged runs are counted, not averaged.", "", *_failures(store, run_ids),
          "## Budget: what each run was given, and how far it trained", "",
          f"Final training loss as a fraction of ln C (1.0 = chance); a cell trains when its mean is <= "
          f"{LOSS_CRITERION}. Labelled = every labelled image a run reads.", "",
          to_markdown(budget_table(df)), "## Test accuracy", "", to_markdown(summary_table(df)),
          "## Plots", "", *[f"![{n}]({n}.png)" for n in PLOTS if n not in failed], ""]
    paths["summary"] = store.path / "summary.md"
    paths["summary"].write_text("\n".join(md), encoding="utf-8")
    return paths


def _failures(store: ResultStore, run_ids=None) -> list:
    """Lines naming the runs that could not finish (left out of every table; a rerun retries them)."""
    failed = store.failures()
    if run_ids is not None and len(failed):
        failed = failed[failed.run_id.isin(set(run_ids))]
    if not len(failed):
        return []
    return [f"{len(failed)} runs failed and are left out below (rerun the same command to retry them):", "",
            *[f"- {r.dataset} shots={r.shots} seed={r.seed} {r.strategy_label}: {r.error}"
              for r in failed.itertuples()], ""]
