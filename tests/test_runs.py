"""One config in, one record out: optimiser groups and weight decay per strategy, seeded reruns, divergence."""
import math

import pytest
import torch

import ftlib
from ftlib import runs as run_module  # ``ftlib.run`` is the function; the module ``ftlib.runs`` holds ``fit``
from ftlib.errors import FtlibError
from ftlib.penalties import L2SPPenalty
from ftlib.strategies import trainable_parameters

from helpers import tiny


@pytest.mark.parametrize("include_bn_bias", [False, True])
def test_l2sp_groups_never_decay_a_penalised_parameter(lite0_random, include_bn_bias):
    bb, s = lite0_random, ftlib.l2sp(include_bn_bias=include_bn_bias)
    trainable = trainable_parameters(bb, s)
    pen = s.penalty(bb, trainable)
    covered = pen.covered()
    expected_cover = {id(p) for p in bb.model.parameters() if include_bn_bias or p.ndim > 1}
    assert covered == expected_cover
    groups = s.param_groups(bb, 0.01, pen)
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
    groups = s.param_groups(bb, 0.02)
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
    # passes over the labelled set: 96 steps x batch 4 / 8 images; nothing cut it short
    assert rec["passes"] == 48.0 and rec["planned_steps"] == rec["steps"] and rec["time_capped"] is False


def test_training_accuracy_is_the_models_accuracy_on_the_unaugmented_training_images():
    """Oracle: the returned model's predictions on the training split, computed here without ftlib's evaluate."""
    rec, bb, ds = ftlib.run(tiny(ftlib.partial(k=1), epochs=2), progress=False, return_model=True)
    x = ds.train.images.float().div(255)
    x = torch.nn.functional.interpolate(x, size=(ds.resolution, ds.resolution), mode="bilinear", antialias=True,
                                        align_corners=False)
    x = (x - torch.tensor(bb.mean).view(1, 3, 1, 1)) / torch.tensor(bb.std).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = bb.model.eval()(x).argmax(1)
    assert rec["train_acc"] == pytest.approx((pred == ds.train.labels).float().mean().item(), abs=1e-6)


def test_schedule_grows_with_the_data_and_has_no_step_cap():
    from ftlib import hyper

    steps = [hyper.train_steps(n) for n in (10, 100, 1000, 10000)]
    assert steps == [20, 47, 469, 4688]  # 15 passes of batch 32, at least 20 steps
    assert hyper.passes_of(4688, 32, 10000) == pytest.approx(15.0, abs=0.01)


def test_a_time_budget_shortens_the_run_and_marks_it_under_trained(caplog):
    """A budget far below one epoch's time: the run keeps one epoch, says so, and is recorded as cut short."""
    import logging

    from ftlib.report import budget_table, summary_table

    with caplog.at_level(logging.WARNING, logger="ftlib"):
        rec = ftlib.run(tiny(ftlib.partial(k=1), epochs=4, max_seconds=1e-3), progress=False)
    assert rec["time_capped"] is True and rec["status"] == "ok"
    assert rec["planned_steps"] == 4 * 32 and rec["steps"] == 32  # one epoch of 32 steps of the planned 4
    assert "under-trained" in caplog.text and "time budget" in caplog.text
    import pandas as pd

    df = pd.DataFrame([rec])
    row = summary_table(df, formatted=False).iloc[0]
    assert row.n_seeds == 0 and row.under_trained == 1 and math.isnan(row.test_acc_mean)  # never shown as a result
    assert budget_table(df).iloc[0]["trains"].startswith("NO")


def test_diverged_run_reports_instead_of_raising():
    rec = ftlib.run(tiny(ftlib.full(lr=1e20), epochs=2), progress=False)
    assert rec["status"] == "diverged"
    assert not math.isfinite(rec["curves"]["train_loss"][-1])
    assert math.isnan(rec["test_acc"])


def test_a_run_id_names_the_schedule_rules_and_augmentation_only_when_it_is_off():
    from ftlib import hyper
    from ftlib.runs import RunConfig

    on, off = RunConfig("hymenoptera", shots=5), RunConfig("hymenoptera", shots=5, augment=False)
    assert on.key()["schedule"] == hyper.SCHEDULE and "augment" not in on.key()
    assert off.key()["augment"] is False and on.run_id() != off.run_id()
    with pytest.raises(FtlibError, match="augment must be True or False"):
        RunConfig("hymenoptera", shots=5, augment="no")
