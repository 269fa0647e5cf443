"""Tables of finished runs, as DataFrames and markdown: pure functions of the results DataFrame.

``df`` is ``ResultStore(path).frame()`` (or ``pd.DataFrame(records)``). Rows are grouped by
(dataset, shots, strategy_label) only, so filter ``df`` to one backbone and profile first.
The figures of the same frame are in ``ftlib.plots``; a results directory's ``summary.md``
is written by ``ftlib.summary``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .strategies import order_of


KEYS = ["dataset", "shots", "strategy_label"]
# Config columns that must agree inside one table cell; a mix means df was not filtered.
SAME_WITHIN_GROUP = ["backbone", "profile", "resolution", "epochs", "data_source"]  # data_source: never mix copies
NUMERIC_COLUMNS = ["n_seeds", "diverged", "under_trained", "test_acc_mean", "test_acc_std", "val_acc_mean",
                   "train_seconds", "trainable_params", "peak_mem_mb"]


def _shots_key(shots) -> tuple:
    """Sort key: numeric shots ascending, then "all" (a CSV may give "5" or 5)."""
    s = str(shots)
    return (0, int(s)) if s.isdigit() else (1, s)


def strategy_key(strategy, label) -> tuple:
    """Table and legend order: the strategy's own ``order`` (least to most adapted weights), then its label."""
    return order_of(str(strategy)), str(label)


def finished(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df


def time_capped(df: pd.DataFrame) -> pd.Series:
    """Rows whose schedule a time budget shortened: under-trained, never a result of their strategy."""
    if "time_capped" not in df:
        return pd.Series(False, index=df.index)
    return df["time_capped"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def results(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are results: finished, and trained for their whole schedule."""
    ok = finished(df)
    return ok[~time_capped(ok)]


def summary_table(df: pd.DataFrame, formatted: bool = True) -> pd.DataFrame:
    """One row per (dataset, shots, strategy_label): mean ± std of test accuracy over seeds.

    Only ``status == "ok"`` runs trained for their whole schedule count toward means; ``diverged``
    counts the failed ones, ``under_trained`` those a time budget cut short (never averaged).
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
            order = (dataset, _shots_key(shots), strategy_key(strategy, label))
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
    done = finished(grp)
    ok = results(grp)

    def col(name):  # the mean of no runs and the std of one run are NaN, as wanted
        return pd.to_numeric(ok[name]) if name in ok else pd.Series(dtype=float)

    # Trainable parameters are a property of the config, so diverged runs tell it too.
    params = grp["trainable_params"].dropna() if "trainable_params" in grp else []
    return {
        "n_seeds": len(ok), "diverged": len(grp) - len(done), "under_trained": len(done) - len(ok),
        "test_acc_mean": float(col("test_acc").mean()),
        "test_acc_std": float(col("test_acc").std(ddof=1)),
        "val_acc_mean": float(col("val_acc").mean()),
        "train_seconds": float(col("train_seconds").mean()),
        "trainable_params": int(params.iloc[0]) if len(params) else math.nan,
        "peak_mem_mb": float(col("peak_mem_mb").mean()),
    }


BUDGET_COLUMNS = ["labelled", "steps", "passes", "loss / ln C", "worst seed", "train acc", "epoch kept", "trains"]
LOSS_CRITERION = 0.35  # a gradient-trained run "trains" when its final training loss is <= 0.35 ln C


def budget_table(df: pd.DataFrame) -> pd.DataFrame:
    """What each cell's runs were given and how far they trained, to read every accuracy in its light.

    One row per (dataset, shots, strategy_label): labelled images per run (train + val, every label
    a run reads), optimiser steps, passes over the training images, final training loss as a
    fraction of ln C (chance level; mean over seeds and the worst seed), accuracy on the unaugmented
    training images, the selected epoch / epochs, and whether the cell trains (mean final loss <=
    ``LOSS_CRITERION`` ln C and no run cut short by a time budget; the probe is closed-form and
    scratch is exempt from the loss line).

    Example:
        >>> df = pd.DataFrame({"dataset": "toy", "shots": 5, "strategy": "full", "strategy_label": "full",
        ...                    "status": "ok", "n_labelled": 10, "num_classes": 2, "steps": 40, "epochs": 6,
        ...                    "selected_epoch": 6, "final_train_loss": [0.1, 0.2]})
        >>> round(float(budget_table(df).loc[("toy", 5, "full"), "loss / ln C"]), 3)
        0.216
    """
    rows = {}
    ok = finished(df)
    for (dataset, shots, label), grp in ok.groupby([ok["dataset"], ok["shots"].map(str), ok["strategy_label"]],
                                                   sort=False):
        strategy = grp["strategy"].iloc[0] if "strategy" in grp else ""
        num = lambda c: pd.to_numeric(grp[c], errors="coerce") if c in grp else pd.Series(dtype=float)  # noqa: E731
        n_classes = num("num_classes").max()
        frac = num("final_train_loss") / math.log(n_classes) if n_classes and n_classes > 1 else num("final_train_loss") * np.nan
        closed = strategy == "linear_probe"
        capped = int(time_capped(grp).sum())
        if capped:
            verdict = f"NO: {capped} cut by the time budget"
        elif closed:
            verdict = "closed form"
        elif strategy == "scratch":
            verdict = "exempt"
        else:
            verdict = "yes" if frac.mean() <= LOSS_CRITERION else "NO"
        sel = "–" if closed else f"{num('selected_epoch').mean():.0f} / {num('epochs').mean():.0f}"
        order = (dataset, _shots_key(shots), strategy_key(strategy, label))
        rows[order] = ((dataset, int(shots) if shots.isdigit() else shots, label), {
            "labelled": int(num("n_labelled").max()) if num("n_labelled").notna().any() else math.nan,
            "steps": math.nan if closed else float(num("steps").mean()),
            "passes": math.nan if closed else float(num("passes").mean()),
            "loss / ln C": math.nan if closed else float(frac.mean()),
            "worst seed": math.nan if closed else float(frac.max()),
            "train acc": float(num("train_acc").mean()),
            "epoch kept": sel, "trains": verdict})
    keys, values = zip(*[rows[o] for o in sorted(rows)]) if rows else ([], [])
    index = pd.MultiIndex.from_tuples(keys, names=KEYS) if keys else pd.MultiIndex.from_arrays([[], [], []], names=KEYS)
    return pd.DataFrame(list(values), index=index,
                        columns=BUDGET_COLUMNS)


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
    if column in ("loss / ln C", "worst seed", "train acc"):
        return f"{value:.2f}"
    if column == "passes":
        return f"{value:.1f}"
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


def which_strategy(df: pd.DataFrame, exclude=("scratch",)) -> pd.DataFrame:
    """Per dataset × shots, the strategy to train: the cheapest whose mean test accuracy is within 2 standard
    errors (of the difference, over seeds) of the best mean, since a smaller difference is seed noise.

    Returns one row per (dataset, shots): ``pick``, its ``acc`` and ``seconds`` (mean training time), and
    ``best`` / ``best_acc`` (the highest mean, the same strategy when the pick is the best).

    Example:
        >>> d = pd.DataFrame({"dataset": "toy", "shots": 5, "strategy": ["full"] * 2 + ["linear_probe"] * 2,
        ...                   "strategy_label": ["full"] * 2 + ["linear_probe"] * 2, "status": "ok",
        ...                   "test_acc": [0.80, 0.84, 0.81, 0.82], "train_seconds": [30, 30, 1, 1]})
        >>> which_strategy(d).loc[("toy", 5), ["pick", "best"]].tolist()
        ['linear_probe', 'full']
    """
    t = summary_table(df, formatted=False)
    rows = {}
    for (d, k), grp in t.groupby(level=[0, 1], sort=False):
        grp = grp.droplevel([0, 1])
        grp = grp[[label.split("(")[0] not in exclude for label in grp.index] & grp.test_acc_mean.notna().to_numpy()]
        if not len(grp):
            continue
        se = (grp.test_acc_std / np.sqrt(grp.n_seeds.clip(lower=1))).fillna(0.0)
        best = grp.test_acc_mean.idxmax()
        close = grp[grp.test_acc_mean >= grp.test_acc_mean[best] - 2 * np.sqrt(se ** 2 + se[best] ** 2)]
        pick = close.train_seconds.idxmin()
        rows[(d, k)] = {"pick": pick, "acc": grp.test_acc_mean[pick], "seconds": grp.train_seconds[pick],
                        "best": best, "best_acc": grp.test_acc_mean[best]}
    index = pd.MultiIndex.from_tuples(list(rows), names=["dataset", "shots"]) if rows else \
        pd.MultiIndex.from_arrays([[], []], names=["dataset", "shots"])
    return pd.DataFrame(list(rows.values()), index=index, columns=["pick", "acc", "seconds", "best", "best_acc"])
