"""One config in, one record out: optimiser groups and weight decay per strategy, seeded reruns, divergence."""
import math
import sys

import pytest
import torch

import ftlib
from ftlib.errors import FtlibError
from ftlib.penalties import L2SPPenalty
from ftlib.runs import param_groups
from ftlib.strategies import trainable_parameters

from helpers import tiny

run_module = sys.modules["ftlib.runs"]  # ``ftlib.run`` is the function; the module holds ``fit``


@pytest.mark.parametrize("include_bn_bias", [False, True])
def test_l2sp_groups_never_decay_a_penalised_parameter(lite0_random, include_bn_bias):
    bb, s = lite0_random, ftlib.l2sp(include_bn_bias=include_bn_bias)
    trainable = trainable_parameters(bb, s)
    pen = s.penalty(bb, trainable)
    covered = pen.covered()
    expected_cover = {id(p) for p in bb.model.parameters() if include_bn_bias or p.ndim > 1}
    assert covered == expected_cover
    groups = param_groups(bb, s, 0.01, pen)
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert sorted(in_groups) == sorted(id(p) for _, p, _ in trainable)  # each trainable param once
    for g in groups:
        if any(id(p) in covered for p in g["params"]):
            assert g["weight_decay"] == 0, g["name"]
    head_ids = {id(p) for p in bb.head.parameters()}
    for g in groups:
        is_head = all(id(p) in head_ids for p in g["params"])
        assert g["lr"] == pytest.approx(0.01 * (s.head_lr_mult if is_head else 1.0))


def test_full_decays_kernels_only(lite0_random):
    bb, s = lite0_random, ftlib.full(weight_decay=5e-4)
    groups = param_groups(bb, s, 0.02)
    for g in groups:
        if g["weight_decay"] != 0:
            assert g["weight_decay"] == 5e-4
            assert all(p.ndim > 1 for p in g["params"]), g["name"]  # never BatchNorm or biases
    decayed = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
    assert decayed == {id(p) for p in bb.model.parameters() if p.ndim > 1}


def test_l2sp_refuses_weight_decay():
    with pytest.raises(FtlibError):
        ftlib.l2sp(weight_decay=1e-4)


def test_l2sp_run_passes_penalty_and_undecayed_groups_to_fit(monkeypatch):
    """The run path itself: what reaches ``fit`` under l2sp."""
    seen = {}
    real_fit = run_module.fit

    def spy(model, train, val, **kw):
        seen.update(kw)
        seen["start"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        return real_fit(model, train, val, **kw)

    monkeypatch.setattr(run_module, "fit", spy)
    rec, bb, _ = ftlib.run(tiny(ftlib.l2sp(alpha=0.1, beta=0.01)), progress=False, return_model=True)
    pen = seen["penalty"]
    assert isinstance(pen, L2SPPenalty) and pen.alpha == 0.1 and pen.beta == 0.01
    for g in seen["groups"]:
        if any(id(p) in pen.covered() for p in g["params"]):
            assert g["weight_decay"] == 0
    # w0 is the starting point, kept apart from the trained weights
    for n, ref in zip(pen.sp_names, pen.ref):
        assert torch.equal(ref, seen["start"][n])
    assert rec["status"] == "ok" and rec["strategy"] == "l2sp"


def test_same_seed_gives_identical_metrics():
    a = ftlib.run(tiny(ftlib.full(), epochs=2), progress=False)
    b = ftlib.run(tiny(ftlib.full(), epochs=2), progress=False)
    for key in ("status", "test_acc", "curves", "block_distance", "trainable_params", "run_id", "steps",
                "final_train_loss", "selected_epoch"):
        assert a[key] == b[key], key
    assert all(math.isfinite(v) for v in a["curves"]["train_loss"])
    assert math.isnan(a["val_acc"]) and a["n_val"] == 0  # no val split: nothing is selected on extra labels


def test_run_records_its_budget():
    """steps = epochs x steps per epoch (an epoch shows >= 128 images: 16 passes over 8 images, batch 4);
    the fixed schedule keeps the last epoch; the final loss is the last epoch's cross-entropy."""
    rec = ftlib.run(tiny(ftlib.partial(k=1), epochs=3), progress=False)
    assert rec["n_train"] == 8 and rec["n_labelled"] == 8 and rec["num_classes"] == 2
    assert rec["steps"] == 3 * (8 * 16 // 4) and rec["selected_epoch"] == 3 == rec["epochs"]
    assert rec["final_train_loss"] == rec["curves"]["train_loss"][-1]
    assert rec["data_source"] == "folder"


def test_diverged_run_reports_instead_of_raising():
    rec = ftlib.run(tiny(ftlib.full(lr=1e20), epochs=2), progress=False)
    assert rec["status"] == "diverged"
    assert not math.isfinite(rec["curves"]["train_loss"][-1])
    assert math.isnan(rec["test_acc"])
