"""Plots: every figure is produced, in teaching order and stable colours; a model's figures spread and title images."""
import matplotlib

matplotlib.use("Agg")  # tests never open windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import LITE0, image_split, records  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import ftlib  # noqa: E402
from ftlib import plots, report  # noqa: E402
from ftlib.errors import FtlibError  # noqa: E402


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
    full = next(line for line in ax.get_lines() if line.get_label() == "full")  # the table's means, drawn
    table = report.block_distance_table(df[df.status == "ok"], sidecar)
    assert list(full.get_ydata()) == pytest.approx(table["full"].tolist())
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
    _, mine = plt.subplots()
    assert plots.plot_acc_vs_time(df, ax=mine) is mine.figure
    assert isinstance(plots.plot_acc_vs_shots(df.iloc[:0]), Figure)
    plt.close("all")


@pytest.fixture(scope="module")
def bb():
    torch.manual_seed(0)
    return ftlib.load_backbone(LITE0, num_classes=3, pretrained=False)


def test_plot_confusion_labels_its_classes():
    cm = pd.DataFrame([[5, 0, 0], [1, 4, 0], [0, 2, 3]], index=pd.Index(list("abc"), name="true"),
                      columns=pd.Index(list("abc"), name="predicted"))
    ax = plots.plot_confusion(cm)
    assert isinstance(ax, Axes)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for v in cm.values.ravel())
    plt.close("all")


def test_plot_predictions_titles_and_colours(bb):
    split = image_split()
    fig = plots.plot_predictions(bb.model, split, bb.mean, bb.std, split.classes, n=6)
    assert isinstance(fig, Figure)
    pred = ftlib.train.predict_logits(bb.model, split, bb.mean, bb.std).argmax(1)
    titled = [a for a in fig.axes if a.get_title()]
    assert len(titled) == 6
    index = np.linspace(0, len(split) - 1, 6).round().astype(int)  # spread over the split
    for a, i in zip(titled, index):
        true, p = split.classes[int(split.labels[i])], split.classes[int(pred[i])]
        assert a.get_title() == f"pred: {p}\ntrue: {true}"
        assert matplotlib.colors.same_color(a.title.get_color(), "black" if p == true else "red")
    with pytest.raises(FtlibError):
        plots.plot_predictions(bb.model, split, bb.mean, bb.std, split.classes, n=6, ax=[fig.axes[0]])
    plt.close("all")


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_samples_one_row_per_class(channels):
    split = image_split(channels=channels, classes=tuple("abcdefghijkl"))
    ax = plots.plot_samples(split, per_class=3, max_classes=4)
    assert isinstance(ax, Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 4 and labels[0] == "a" and labels[-1] == "l"  # spread over the classes
    mosaic = ax.get_images()[0].get_array()
    assert mosaic.shape[2] == 3 and mosaic.shape[0] > 4 * 32 and mosaic.shape[1] > 3 * 32
    plt.close("all")
