"""Tables of finished runs, as DataFrames and markdown: pure functions of the results DataFrame (and its sidecar).

``df`` is ``ResultStore(path).frame()`` (or ``pd.DataFrame(records)``); ``sidecar`` is
``ResultStore(path).sidecar()``. Rows are grouped by (dataset, shots, strategy_label) only, so
filter ``df`` to one backbone and profile first. The figures of the same frame are in
``ftlib.plots``; a results directory's ``summary.md`` is written by ``ftlib.page``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from .errors import FtlibError
from .strategies import order_of, parse_strategy


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


def cell(df: pd.DataFrame, dataset: str, shots, strategy: str) -> pd.DataFrame:
    """The finished runs of one cell: ``dataset``, ``shots`` (``5`` and ``"5"`` alike) and ``strategy`` (its name).

    >>> d = pd.DataFrame({"dataset": "toy", "shots": [5, "5", 20], "strategy": "full",
    ...                   "status": ["ok", "failed", "ok"]})
    >>> len(cell(d, "toy", "5", "full"))
    1
    """
    return df[(df.dataset == dataset) & (df.shots.astype(str) == str(shots)) & (df.strategy == strategy)
              & (df.status == "ok")]


def accuracies(df: pd.DataFrame, dataset: str, shots, strategy: str) -> np.ndarray:
    """Test accuracy of one cell's finished runs, in seed order."""
    return cell(df, dataset, shots, strategy).sort_values("seed").test_acc.to_numpy(float)


def welch_se(x: np.ndarray, y: np.ndarray) -> float:
    """Standard error of the difference of two means over seeds (Welch); NaN with fewer than 2 seeds a side."""
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    return float(np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)))


def regimes(df: pd.DataFrame) -> dict:
    """dataset -> its shot regimes, fewest first ("all" last).

    >>> regimes(pd.DataFrame({"dataset": "toy", "shots": ["all", 20, 5]}))
    {'toy': ['5', '20', 'all']}
    """
    out = {}
    for d in dict.fromkeys(df.dataset):
        shots = {str(s) for s in df[df.dataset == d].shots}
        out[d] = sorted(shots, key=lambda s: (0, int(s)) if s.isdigit() else (1, 0))
    return out


def ln_c(n_classes) -> float:
    """ln C, the training loss of a uniform guess over C classes; NaN where C < 2 or unknown.

    >>> round(ln_c(2), 4), ln_c(1)
    (0.6931, nan)
    """
    return math.log(n_classes) if n_classes > 1 else math.nan


def loss_over_ln_c(df: pd.DataFrame) -> pd.Series:
    """Each run's final training loss as a fraction of ln C (1.0 = chance); NaN where the frame lacks either.

    >>> loss_over_ln_c(pd.DataFrame({"final_train_loss": [0.0, 0.6931471805599453], "num_classes": 2})).tolist()
    [0.0, 1.0]
    """
    def num(column):
        return pd.to_numeric(df[column], errors="coerce") if column in df else pd.Series(math.nan, index=df.index)
    return num("final_train_loss") / num("num_classes").map(ln_c)


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
        frac = loss_over_ln_c(grp)
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


def block_distance_table(df: pd.DataFrame, sidecar: dict, by: str = "strategy_label") -> pd.DataFrame:
    """Mean relative weight distance ||w - w0|| / ||w0|| per block over runs, one column per ``by`` value.

    The numbers are the ``block_distance`` each run recorded (``ftlib.runs.block_distances``);
    this only averages them over seeds. Filter ``df`` to one dataset and shot count first.

    Args:
        df: Results frame (``ftlib.load_or_run`` or ``ResultStore.frame()``), ok runs only.
        sidecar: ``{run_id: {"block_distance": {block: distance}}}`` from the same store.
        by: Column whose values become the table's columns.

    Returns:
        DataFrame indexed by block (stem -> head), columns in order of first appearance
        (NaN throughout for a value none of whose runs recorded distances).

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


def compare_stores(reference: pd.DataFrame, rerun: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy of two results frames side by side: is a rerun within seed noise of the reference?

    Filter both frames to the same grid first (``ftlib.bench.main_grid``); only ok runs count.
    Per cell: both means and stds, their difference, the standard error of that difference
    (sqrt((s1² + s2²) / n), n = seeds), whether |difference| <= 2 standard errors, and each
    frame's torch thread counts (``threads_reference``, ``threads_rerun``: a run's float rounding
    depends on its thread count, so a rerun with other threads need not match run for run).

    Example:
        >>> d = pd.DataFrame({"dataset": "toy", "shots": 5, "strategy_label": "full", "status": "ok",
        ...                   "test_acc": [0.80, 0.84], "torch_threads": 2})
        >>> t = compare_stores(d, d.assign(test_acc=[0.81, 0.85]))
        >>> round(float(t["diff"].iloc[0]), 3), bool(t.within_2se.iloc[0]), t.threads_rerun.iloc[0]
        (0.01, True, '2')
    """
    stats = []
    for df in (reference, rerun):
        df = df[df.status == "ok"] if len(df) else df
        if not len(df):
            raise FtlibError("compare_stores needs finished runs in both frames")
        cells = df.groupby(KEYS)
        stats.append(cells.test_acc.agg(["mean", "std", "count"]).assign(
            threads=cells.torch_threads.agg(_threads) if "torch_threads" in df else "?"))
    t = stats[0].join(stats[1], how="inner", suffixes=("_reference", "_rerun"))
    t["diff"] = t.mean_rerun - t.mean_reference
    t["se_diff"] = np.sqrt(t.std_reference ** 2 / t.count_reference + t.std_rerun ** 2 / t.count_rerun)
    t["within_2se"] = t["diff"].abs() <= 2 * t.se_diff + 1e-9
    return t.drop(columns=["count_reference", "count_rerun"])


def _threads(values: pd.Series) -> str:
    """The torch thread counts of a cell's runs: ``"2"``, ``"1,2"``, or ``"?"`` where none is recorded."""
    return ",".join(str(n) for n in sorted({int(v) for v in pd.to_numeric(values, errors="coerce").dropna()})) or "?"


def crossover(df: pd.DataFrame, against: str = "linear_probe", strategies=("full", "lp_ft")) -> pd.DataFrame:
    """Each strategy's gap to ``against`` at every data size of every dataset, with its standard error.

    One row per (dataset, shots, strategy): labelled images per class, the gap in mean test accuracy
    (strategy − ``against``, over seeds), its Welch standard error and a verdict at 2 SE ("ahead",
    "tie", "behind"). Runs a time budget cut short are left out (they are not results).

    Example:
        >>> d = pd.DataFrame({"dataset": "toy", "shots": [5] * 4, "strategy": ["full"] * 2 + ["linear_probe"] * 2,
        ...                   "status": "ok", "test_acc": [0.9, 0.92, 0.7, 0.72], "seed": [0, 1, 0, 1]})
        >>> r = crossover(d, strategies=("full",)).iloc[0]; (float(r.gap), r.verdict)
        (0.2, 'ahead')
    """
    ok, rows = results(df), []
    for d, shots in regimes(ok).items():
        for k in shots:
            base = accuracies(ok, d, k, against)
            for s in strategies:
                x = accuracies(ok, d, k, s)
                if not len(x) or not len(base):
                    continue
                gap, se = round(float(x.mean() - base.mean()), 6), welch_se(x, base)
                verdict = "tie" if not np.isfinite(se) or abs(gap) <= 2 * se else ("ahead" if gap > 0 else "behind")
                rows.append({"dataset": d, "shots": k, "strategy": s, "gap": gap, "se": se, "verdict": verdict})
    return pd.DataFrame(rows, columns=["dataset", "shots", "strategy", "gap", "se", "verdict"])


def overtakes(table: pd.DataFrame) -> dict:
    """(dataset, strategy) -> the smallest size from which the strategy is ahead (beyond 2 SE) at every larger
    size of the grid, or None when it is not ahead at the largest size.

    >>> t = pd.DataFrame({"dataset": "toy", "shots": ["5", "20", "100"], "strategy": "full",
    ...                   "verdict": ["behind", "ahead", "ahead"]})
    >>> overtakes(t)
    {('toy', 'full'): '20'}
    """
    out = {}
    for (d, s), grp in table.groupby(["dataset", "strategy"], sort=False):
        since = None
        for k, verdict in zip(grp.shots, grp.verdict):
            since = (since or k) if verdict == "ahead" else None
        out[(d, s)] = since
    return out


def auto_regret(df: pd.DataFrame, choices) -> pd.DataFrame:
    """``--strategy auto`` against the best fixed strategy in hindsight, one row per (dataset, shots) cell.

    ``choices`` are the rows ``benchmarks.auto_grid`` stores (``dataset``, ``shots``, ``seed``, ``winner``,
    ``selection_seconds``). Auto's model in a seed is the grid's own run of the strategy it chose there (the
    refit is that run's config), so its test accuracy and training seconds are read from ``df``. The best
    fixed strategy is the one with the highest mean test accuracy over the same seeds. ``regret`` is the
    best's mean minus auto's, ``se`` the standard error of that difference (``welch_se``); auto's cost is choosing plus the refit, against the best strategy's training and against
    training every candidate once.

    >>> g = pd.DataFrame({"dataset": "toy", "shots": 5, "seed": [0, 1, 0, 1], "status": "ok",
    ...                   "strategy": ["linear_probe"] * 2 + ["full"] * 2,
    ...                   "strategy_label": ["linear_probe"] * 2 + ["full"] * 2,
    ...                   "test_acc": [0.8, 0.9, 0.6, 0.7], "train_seconds": [1.0, 1.0, 10.0, 10.0]})
    >>> tried = [{"strategy": "linear_probe"}, {"strategy": "full"}]
    >>> c = [{"dataset": "toy", "shots": "5", "seed": s, "winner": w, "selection_seconds": 4.0, "candidates": tried}
    ...      for s, w in ((0, "linear_probe"), (1, "full"))]
    >>> r = auto_regret(g, c).iloc[0]
    >>> [round(float(r[c]), 3) for c in ("auto", "best", "regret", "auto seconds", "cost / best")], r["best strategy"]
    ([0.75, 0.85, 0.1, 9.5, 9.5], 'linear_probe')
    >>> round(float(r["cost / all candidates"]), 3)  # 9.5 s against 11 s for training both once
    0.864
    """
    ok = results(df)
    rows = []
    choices = pd.DataFrame(list(choices)) if not isinstance(choices, pd.DataFrame) else choices
    if not len(choices):
        return pd.DataFrame()
    for (d, k), picks in choices.groupby(["dataset", choices["shots"].astype(str)], sort=False):
        here = ok[(ok.dataset == d) & (ok.shots.astype(str) == k) & ok.seed.isin(picks.seed)]
        if not len(here):
            continue
        per = here.groupby("strategy_label")
        means = per.test_acc.mean()
        best = means.idxmax()
        acc, secs, all_four = [], [], []
        for _, p in picks.iterrows():
            label = parse_strategy(p["winner"]).label
            mine = here[(here.strategy_label == label) & (here.seed == p["seed"])]
            if len(mine) != 1:
                continue
            acc.append(float(mine.test_acc.iloc[0]))
            secs.append(float(p["selection_seconds"]) + float(mine.train_seconds.iloc[0]))
            tried = [parse_strategy(c["strategy"]).label for c in p["candidates"]] if "candidates" in p else []
            cands = here[(here.seed == p["seed"]) & here.strategy_label.isin(tried)]
            all_four.append(float(cands.train_seconds.sum()))
        if not acc:
            continue
        n, b = len(acc), here[here.strategy_label == best].test_acc.to_numpy(float)
        regret, se = float(means[best] - np.mean(acc)), welch_se(b, np.asarray(acc))
        best_s = float(here[here.strategy_label == best].train_seconds.mean())
        rows.append({"dataset": d, "shots": k, "seeds": n,
                     "auto chose": ", ".join(f"{s} ×{c}" for s, c in picks.winner.value_counts().items()),
                     "auto": float(np.mean(acc)), "best strategy": best, "best": float(means[best]),
                     "regret": regret, "se": se,
                     "within 2 SE": bool(regret <= 2 * se + 1e-12) if not math.isnan(se) else regret <= 1e-12,
                     "auto seconds": float(np.mean(secs)), "best seconds": best_s,
                     "cost / best": float(np.mean(secs)) / best_s if best_s > 0 else math.nan,
                     "cost / all candidates": float(np.mean(secs)) / float(np.mean(all_four)) if all_four else math.nan})
    out = pd.DataFrame(rows)
    if len(out):
        out = out.sort_values(["dataset", "shots"], key=lambda s: s.map(_shots_key) if s.name == "shots" else s)
    return out.reset_index(drop=True)
