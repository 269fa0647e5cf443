"""Report: summary numbers equal hand-computed numpy values; every plot and file is produced."""
import math

import matplotlib

matplotlib.use("Agg")  # tests never open windows
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ftlib import report  # noqa: E402
from ftlib.store import ResultStore  # noqa: E402

# test accuracy by (shots, strategy_label) over seeds 0, 1, 2
ACC = {
    (5, "full"): [0.50, 0.60, 0.70],
    (5, "partial(k=1)"): [0.55, 0.65, 0.62],
    ("all", "full"): [0.90, 0.92, 0.95],
    ("all", "partial(k=1)"): [0.88],  # a single seed: std is undefined
}


def records():
    out = []
    for (shots, label), accs in ACC.items():
        for seed, acc in enumerate(accs):
            strategy = label.split("(")[0]
            out.append({
                "run_id": f"{shots}-{label}-{seed}", "dataset": "toy", "backbone": "tiny",
                "strategy": strategy, "strategy_label": label, "shots": shots, "seed": seed,
                "status": "ok", "val_acc": acc + 0.01, "test_acc": acc,
                "train_seconds": 10.0 * (seed + 1),
                "trainable_params": 100 if strategy == "partial" else 1000, "peak_mem_mb": 50.0,
                "curves": {"train_loss": [1.0, 0.5], "val_acc": [acc - 0.1, acc + 0.01]},
                "block_distance": {"stem": 0.0 if strategy == "partial" else 0.01,
                                   "blocks.0": 0.02, "head": 0.5},
            })
    # A diverged run: counted, never averaged.
    out.append({**out[0], "run_id": "diverged", "seed": 9, "status": "diverged",
                "test_acc": math.nan, "val_acc": 0.0, "train_seconds": 1e6})
    return out


@pytest.fixture
def df():
    return pd.DataFrame(records()).drop(columns=["curves", "block_distance"])


@pytest.fixture
def sidecar():
    return {r["run_id"]: {k: r[k] for k in ("curves", "block_distance")} for r in records()}


def test_summary_matches_numpy(df):
    table = report.summary_table(df, formatted=False)
    assert table.index.names == ["dataset", "shots", "strategy_label"]
    # shots ascending with "all" last; within shots, strategies in teaching order
    assert list(table.index) == [("toy", 5, "partial(k=1)"), ("toy", 5, "full"),
                                 ("toy", "all", "partial(k=1)"), ("toy", "all", "full")]
    for (shots, label), accs in ACC.items():
        row = table.loc[("toy", shots, label)]
        assert row["test_acc_mean"] == pytest.approx(np.mean(accs))
        assert row["n_seeds"] == len(accs)
        if len(accs) > 1:
            assert row["test_acc_std"] == pytest.approx(np.std(accs, ddof=1))
        else:
            assert math.isnan(row["test_acc_std"])
    full5 = table.loc[("toy", 5, "full")]
    assert full5["diverged"] == 1 and full5["train_seconds"] == pytest.approx(20.0)
    assert full5["val_acc_mean"] == pytest.approx(np.mean(ACC[(5, "full")]) + 0.01)
    assert full5["trainable_params"] == 1000 and full5["peak_mem_mb"] == 50.0
    assert "test_acc" not in table


def test_formatted_cells_and_markdown(df):
    table = report.summary_table(df)
    accs = ACC[(5, "full")]
    cell = f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}"
    assert table.loc[("toy", 5, "full"), "test_acc"] == cell
    assert table.loc[("toy", "all", "partial(k=1)"), "test_acc"] == "0.880 ± –"
    md = report.to_markdown(table)
    assert "### toy, shots=5" in md and "### toy, shots=all" in md
    assert md.index("shots=5") < md.index("shots=all")
    assert cell in md and "| partial(k=1) |" in md
    assert report.to_markdown(report.summary_table(df.iloc[:0])) == "_No finished runs._\n"


def test_summary_of_a_store_frame_equals_summary_of_records(tmp_path, df):
    store = ResultStore(tmp_path)
    for r in records():
        store.add(r)
    pd.testing.assert_frame_equal(report.summary_table(store.frame()), report.summary_table(df),
                                  check_dtype=False)


def test_every_plot_returns_axes_or_figure(df, sidecar):
    fig = report.plot_acc_vs_shots(df)
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["5", "all"]
    assert isinstance(report.plot_acc_vs_time(df), Axes)
    ax = report.plot_block_distance(df, sidecar)
    assert isinstance(ax, Axes)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stem", "blocks.0", "head"]
    fig = report.plot_learning_curves(df, sidecar)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    # Legends list strategies in teaching order, and a strategy keeps its colour everywhere.
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["partial(k=1)", "full"]
    assert [h.get_color() for h in handles] == [line.get_color() for line in ax.get_lines()]
    # A regime whose runs have no curves in the sidecar says so instead of drawing an empty panel.
    fig = report.plot_learning_curves(df, {k: v for k, v in sidecar.items() if not k.startswith("all-")})
    texts = [[t.get_text() for t in a.texts] for a in fig.axes[:2]]
    assert texts == [[], ["no finished runs with learning curves"]] and not fig.axes[1].get_lines()
    # Drawing into a caller's axes, and an empty frame, both work.
    import matplotlib.pyplot as plt

    _, mine = plt.subplots()
    assert report.plot_acc_vs_time(df, ax=mine) is mine
    assert isinstance(report.plot_acc_vs_shots(df.iloc[:0]), Figure)
    plt.close("all")


def test_write_summary_writes_four_pngs_and_markdown(tmp_path):
    store = ResultStore(tmp_path)
    for r in records():
        store.add(r)
    paths = report.write_summary(tmp_path)
    assert set(paths) == {"summary", *report.PLOTS}
    for name in report.PLOTS:
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["summary"].read_text()
    assert "### toy, shots=all" in md and "![acc_vs_shots](acc_vs_shots.png)" in md


def test_write_summary_restricted_to_run_ids_counts_only_those(tmp_path):
    store = ResultStore(tmp_path)
    recs = records()
    for r in recs:
        store.add(r)
    keep = [r["run_id"] for r in recs if r["strategy"] == "full" and r["status"] == "ok"]
    md = report.write_summary(tmp_path, run_ids=keep)["summary"].read_text()
    assert md.count("finished runs") == 1 and f"{len(keep)} finished runs" in md
    assert "partial" not in md  # the other strategy's rows are left out of the table
