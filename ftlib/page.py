"""Writes a results directory's summary page: ``summary.md`` (budget and accuracy tables) and four plots."""
from __future__ import annotations

import warnings

import matplotlib.pyplot as plt

from .plots import plot_acc_vs_shots, plot_acc_vs_time, plot_block_distance, plot_learning_curves
from .report import LOSS_CRITERION, budget_table, summary_table, to_markdown
from .store import ResultStore

PLOTS = ["acc_vs_shots", "acc_vs_time", "block_distance", "learning_curves"]


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
        "acc_vs_time": lambda: plot_acc_vs_time(df),
        "block_distance": lambda: plot_block_distance(df, sidecar),
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
