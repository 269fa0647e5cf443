"""Plots and the summary page: every figure and file is produced, in teaching order and stable colours."""
import matplotlib

matplotlib.use("Agg")  # tests never open windows
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from helpers import records  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ftlib import plots, summary  # noqa: E402
from ftlib.store import ResultStore  # noqa: E402


@pytest.fixture
def df():
    return pd.DataFrame(records()).drop(columns=["curves", "block_distance"])


@pytest.fixture
def sidecar():
    return {r["run_id"]: {k: r[k] for k in ("curves", "block_distance")} for r in records()}


def test_every_plot_returns_its_figure(df, sidecar):
    fig = plots.plot_acc_vs_shots(df)
    assert isinstance(fig, Figure)
    # x is labelled images per class: 5 shots, and "all" = 100 training images / 2 classes
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["5", "50"]
    # error bars are standard errors over seeds: full at 5 shots is 0.5, 0.6, 0.7 -> SE 0.1 / sqrt(3)
    full = next(c for c in fig.axes[0].containers if c.get_label() == "full")
    segs = full.lines[2][0].get_segments()
    assert abs((segs[0][1, 1] - segs[0][0, 1]) / 2 - 0.1 / 3 ** 0.5) < 1e-9
    assert isinstance(plots.plot_acc_vs_time(df), Figure)
    fig_b = plots.plot_block_distance(df, sidecar)
    assert isinstance(fig_b, Figure)
    ax = fig_b.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stem", "blocks.0", "head"]
    fig = plots.plot_learning_curves(df, sidecar)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    # Legends list strategies in teaching order, and a strategy keeps its colour everywhere.
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == ["partial(k=1)", "full"]
    assert [h.get_color() for h in handles] == [line.get_color() for line in ax.get_lines()]
    # A regime whose runs have no curves in the sidecar says so instead of drawing an empty panel.
    fig = plots.plot_learning_curves(df, {k: v for k, v in sidecar.items() if not k.startswith("all-")})
    texts = [[t.get_text() for t in a.texts] for a in fig.axes[:2]]
    assert texts == [[], ["no finished runs with learning curves"]] and not fig.axes[1].get_lines()
    # Drawing into a caller's axes, and an empty frame, both work.
    import matplotlib.pyplot as plt

    _, mine = plt.subplots()
    assert plots.plot_acc_vs_time(df, ax=mine) is mine.figure
    assert isinstance(plots.plot_acc_vs_shots(df.iloc[:0]), Figure)
    plt.close("all")


def test_write_summary_writes_four_pngs_and_markdown(tmp_path):
    store = ResultStore(tmp_path)
    for r in records():
        store.add(r)
    paths = summary.write_summary(tmp_path)
    assert set(paths) == {"summary", *summary.PLOTS}
    for name in summary.PLOTS:
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["summary"].read_text()
    assert "### toy, shots=all" in md and "![acc_vs_shots](acc_vs_shots.png)" in md


def test_write_summary_restricted_to_run_ids_counts_only_those(tmp_path):
    store = ResultStore(tmp_path)
    recs = records()
    for r in recs:
        store.add(r)
    keep = [r["run_id"] for r in recs if r["strategy"] == "full" and r["status"] == "ok"]
    md = summary.write_summary(tmp_path, run_ids=keep)["summary"].read_text()
    assert md.count("finished runs") == 1 and f"{len(keep)} finished runs" in md
    assert "partial" not in md  # the other strategy's rows are left out of the table
