"""ftlib.viz: tables add up, the confusion matrix agrees with ``evaluate``, plots return their axes."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ftlib  # noqa: E402
from ftlib import viz  # noqa: E402
from ftlib.datasets import ImageTensors  # noqa: E402
from ftlib.errors import FtlibError  # noqa: E402

RES = 32


def _split(n_per_class=5, classes=("a", "b", "c"), channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = len(classes)
    images = torch.randint(0, 256, (n_per_class * k, channels, RES, RES), dtype=torch.uint8, generator=g)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    return ImageTensors(images, labels, list(classes), RES)


@pytest.fixture(scope="module")
def bb():
    torch.manual_seed(0)
    return ftlib.load_backbone("timm/tf_efficientnet_lite0", num_classes=3, pretrained=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_block_table_covers_every_parameter(bb):
    t = viz.block_table(bb)
    assert list(t.columns) == ["block", "parameters", "share"]
    assert t["block"].iloc[0] == "stem" and t["block"].iloc[-1] == "head"
    assert t["parameters"].sum() == sum(p.numel() for p in bb.model.parameters())
    assert t.loc[t.block == "head", "parameters"].item() == 1280 * 3 + 3
    assert t["share"].sum() == pytest.approx(1.0)


def test_confusion_matrix_agrees_with_evaluate(bb):
    split = _split()
    cm = viz.confusion(bb.model, split, bb.mean, bb.std)
    assert cm.shape == (3, 3)
    assert list(cm.index) == list(cm.columns) == ["a", "b", "c"]
    assert cm.values.sum() == len(split)
    assert (cm.sum(axis=1).values == 5).all()  # each row is one true class
    acc = ftlib.evaluate(bb.model, split, bb.mean, bb.std)
    assert np.trace(cm.values) / cm.values.sum() == pytest.approx(acc)
    ax = viz.plot_confusion(cm)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


def test_plot_predictions_titles_and_colours(bb):
    split = _split()
    fig = viz.plot_predictions(bb.model, split, bb.mean, bb.std, split.classes, n=6)
    assert isinstance(fig, matplotlib.figure.Figure)
    pred = ftlib.train.predict_logits(bb.model, split, bb.mean, bb.std).argmax(1)
    titled = [a for a in fig.axes if a.get_title()]
    assert len(titled) == 6
    index = np.linspace(0, len(split) - 1, 6).round().astype(int)  # spread over the split
    for a, i in zip(titled, index):
        true, p = split.classes[int(split.labels[i])], split.classes[int(pred[i])]
        assert a.get_title() == f"pred: {p}\ntrue: {true}"
        assert matplotlib.colors.same_color(a.title.get_color(), "black" if p == true else "red")
    with pytest.raises(FtlibError):
        viz.plot_predictions(bb.model, split, bb.mean, bb.std, split.classes, n=6, ax=[fig.axes[0]])


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_samples_one_row_per_class(channels):
    split = _split(channels=channels, classes=tuple("abcdefghijkl"))
    ax = viz.plot_samples(split, per_class=3, max_classes=4)
    assert isinstance(ax, matplotlib.axes.Axes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 4 and labels[0] == "a" and labels[-1] == "l"  # spread over the classes
    mosaic = ax.get_images()[0].get_array()
    assert mosaic.shape[2] == 3 and mosaic.shape[0] > 4 * RES and mosaic.shape[1] > 3 * RES


def test_imagenet_top5_is_a_ranked_distribution():
    torch.manual_seed(0)
    bb = ftlib.load_backbone("timm/tf_efficientnet_lite0", pretrained=False)  # 1000-class head kept
    split = _split(n_per_class=2)
    top = viz.imagenet_top5(bb, split, n=3)
    assert len(top) == 3 * 5
    assert list(top.index.get_level_values("rank")[:5]) == [1, 2, 3, 4, 5]
    assert list(top.index.get_level_values("true")[::5]) == ["a", "a", "b"]
    for _, g in top.groupby(level="image"):
        p = g["probability"].to_numpy()
        assert (np.diff(p) <= 0).all() and 0 < p.sum() <= 1 + 1e-6
    assert top["label"].map(type).eq(str).all() and top["imagenet_class"].between(0, 999).all()
    picked = viz.imagenet_top5(bb, split, index=[5])
    assert set(picked.index.get_level_values("image")) == {5}
    with pytest.raises(FtlibError, match="ImageNet head"):
        three = ftlib.load_backbone("timm/tf_efficientnet_lite0", num_classes=3, pretrained=False)
        viz.imagenet_top5(three, split)
