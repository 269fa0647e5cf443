"""Tables of one model: blocks, predictions (confusion, ImageNet top 5), BatchNorm drift, L2-SP coverage, groups."""
import math

import numpy as np
import pytest
import torch
from helpers import LITE0, image_split
from torch import nn

import ftlib
from ftlib.backbones import Backbone, build_blocks
from ftlib.diagnostics import (block_table, bn_drift, bn_running_stats, confusion, group_table, imagenet_top5,
                               l2sp_coverage)
from ftlib.errors import FtlibError
from ftlib.penalties import L2SPPenalty
from ftlib.train import frozen_batchnorms, set_train_mode


def toy_backbone():
    """conv + bn (block "0"/"1" -> stem) + linear head: three blocks' worth of parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    return Backbone("toy", model, (0.5,) * 3, (0.5,) * 3, 8, build_blocks(model, "4"), "4", True)


def test_bn_running_stats_is_a_detached_copy():
    bb = toy_backbone()
    stats = bn_running_stats(bb.model)
    assert list(stats) == ["1"]
    bb.model.train()(torch.randn(6, 3, 8, 8))
    assert not torch.equal(stats["1"]["running_mean"], bb.model[1].running_mean)  # the copy did not follow
    assert torch.equal(stats["1"]["running_mean"], torch.zeros(4))


def test_bn_drift_equals_the_hand_computed_change():
    bb = toy_backbone()
    ref = bn_running_stats(bb.model)
    with torch.no_grad():
        bb.model[1].running_mean += torch.tensor([0.0, -0.25, 0.125, 0.0])
        bb.model[1].running_var *= 3.0  # var starts at 1: the largest change is exactly 2
    row = bn_drift(bb, ref).iloc[0]
    assert (row.block, row.layer) == ("stem", "1")
    assert row.mean_drift == 0.25 and row.var_drift == 2.0 and not row.identical
    assert row.mean_shift == pytest.approx(0.25 / math.sqrt(1 + bb.model[1].eps))  # in reference std units


def test_bn_drift_mean_shift_is_in_reference_std_units():
    bn = nn.Sequential(nn.BatchNorm1d(2, eps=0.0))
    with torch.no_grad():
        bn[0].running_var.copy_(torch.tensor([4.0, 100.0]))
    ref = bn_running_stats(bn)
    with torch.no_grad():
        bn[0].running_mean += torch.tensor([1.0, 5.0])  # 1/2 = 0.5 and 5/10 = 0.5 std: equal shifts
    row = bn_drift(bn, ref).iloc[0]
    assert row.mean_drift == 5.0 and row.mean_shift == pytest.approx(0.5) and row.var_drift == 0.0


def test_bn_drift_follows_the_train_mode_pitfall():
    """Frozen BN stays bit-identical only when put back in eval mode (pytorch/pytorch#86590)."""
    for policy, moves in (("frozen", False), ("train", True)):
        bb = toy_backbone()
        for p in bb.model[:2].parameters():
            p.requires_grad_(False)
        ref = bn_running_stats(bb.model)
        set_train_mode(bb.model, frozen_batchnorms(bb.model), policy)
        bb.model(torch.randn(6, 3, 8, 8))
        drift = bn_drift(bb, ref)
        assert drift.identical.tolist() == [not moves]
        assert not drift.trainable.any()
        assert (drift.mean_drift.iloc[0] > 0) == moves


def test_bn_drift_on_a_plain_module_has_no_block():
    model = nn.Sequential(nn.BatchNorm1d(2))
    drift = bn_drift(model, bn_running_stats(model))
    assert drift.block.tolist() == [""] and drift.identical.all() and drift.mean_drift.iloc[0] == 0.0


def test_l2sp_coverage_counts_kernels_only_by_default():
    bb = toy_backbone()
    table = l2sp_coverage(bb, L2SPPenalty.for_backbone(bb, 0.1, 0.01))
    # stem: conv kernel 4*3*3*3 = 108 pulled to w0; conv bias 4 + bn gamma/beta 8 free
    assert table.loc["stem"].to_dict() == {"to_w0": 1, "to_zero": 0, "free": 3, "to_w0_params": 108,
                                           "to_zero_params": 0, "free_params": 12}
    # head: weight 3*4 = 12 under plain L2, bias 3 free
    assert table.loc["head", "to_zero_params"] == 12 and table.loc["head", "free_params"] == 3
    everything = l2sp_coverage(bb, L2SPPenalty.for_backbone(bb, 0.1, 0.01, include_bn_bias=True))
    assert everything.free.sum() == 0
    assert everything[["to_w0_params", "to_zero_params"]].values.sum() == sum(
        p.numel() for p in bb.model.parameters())


def test_group_table_shows_no_decay_on_penalised_parameters():
    bb = toy_backbone()
    strategy = ftlib.l2sp(alpha=0.1, beta=0.01)
    pen = L2SPPenalty.for_backbone(bb, strategy.alpha, strategy.beta)
    table = group_table(strategy.param_groups(bb, 0.01, pen), pen)
    assert table.params.sum() == sum(p.numel() for p in bb.model.parameters())
    assert table.penalised.sum() == 2  # conv kernel and head weight
    assert (table.weight_decay == 0).all()
    full = group_table(ftlib.full().param_groups(bb, 0.01))
    assert (full.penalised == 0).all()
    assert set(full.loc[full.weight_decay > 0, "name"]) == {"body", "head"}  # kernels decay towards 0


@pytest.fixture(scope="module")
def bb3():
    """lite0 with random weights and a 3-class head."""
    torch.manual_seed(0)
    return ftlib.load_backbone(LITE0, num_classes=3, pretrained=False)


def test_block_table_covers_every_parameter(bb3):
    t = block_table(bb3)
    assert list(t.columns) == ["block", "parameters", "share"]
    assert t["block"].iloc[0] == "stem" and t["block"].iloc[-1] == "head"
    assert t["parameters"].sum() == sum(p.numel() for p in bb3.model.parameters())
    assert t.loc[t.block == "head", "parameters"].item() == 1280 * 3 + 3
    assert t["share"].sum() == pytest.approx(1.0)


def test_confusion_matrix_agrees_with_evaluate(bb3):
    split = image_split()
    cm = confusion(bb3.model, split, bb3.mean, bb3.std)
    assert cm.shape == (3, 3)
    assert list(cm.index) == list(cm.columns) == ["a", "b", "c"]
    assert cm.values.sum() == len(split)
    assert (cm.sum(axis=1).values == 5).all()  # each row is one true class
    acc = ftlib.evaluate(bb3.model, split, bb3.mean, bb3.std)
    assert np.trace(cm.values) / cm.values.sum() == pytest.approx(acc)


def test_imagenet_top5_is_a_ranked_distribution():
    torch.manual_seed(0)
    bb = ftlib.load_backbone(LITE0, pretrained=False)  # 1000-class head kept
    split = image_split(n_per_class=2)
    top = imagenet_top5(bb, split, n=3)
    assert len(top) == 3 * 5
    assert list(top.index.get_level_values("rank")[:5]) == [1, 2, 3, 4, 5]
    assert list(top.index.get_level_values("true")[::5]) == ["a", "a", "b"]
    for _, g in top.groupby(level="image"):
        p = g["probability"].to_numpy()
        assert (np.diff(p) <= 0).all() and 0 < p.sum() <= 1 + 1e-6
    assert top["label"].map(type).eq(str).all() and top["imagenet_class"].between(0, 999).all()
    picked = imagenet_top5(bb, split, index=[5])
    assert set(picked.index.get_level_values("image")) == {5}
    with pytest.raises(FtlibError, match="ImageNet head"):
        three = ftlib.load_backbone(LITE0, num_classes=3, pretrained=False)
        imagenet_top5(three, split)
