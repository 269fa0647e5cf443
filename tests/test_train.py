"""The training loop: BatchNorm policy of frozen blocks, fit's epoch selection, peak memory."""
import math
import numpy as np
import pytest
import torch
from torch import nn

import ftlib
from ftlib.datasets import ImageTensors
from ftlib.train import evaluate, fit, flush_denormal_enabled, frozen_batchnorms, process_flags, set_train_mode

from helpers import LITE0, tiny


def test_set_train_mode_keeps_frozen_batchnorm_in_eval():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(2, 3, 5, 5))
    for p in list(model[0].parameters()) + list(model[1].parameters()):
        p.requires_grad_(False)
    frozen = frozen_batchnorms(model)
    assert frozen == [model[1]]
    model.eval()
    set_train_mode(model, frozen, "frozen")
    assert model.training and model[3].training and not model[1].training
    set_train_mode(model, frozen, "train")
    assert model[1].training
    set_train_mode(model, [], "eval")  # every BatchNorm, trainable or not
    assert model.training and not model[1].training


def test_bn_eval_policy_makes_training_forward_equal_the_eval_forward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(8, 3, 5, 5)
    ref = model.eval()(x)
    set_train_mode(model, [], "eval")
    before = model[1].running_mean.clone()
    out = model(x)  # a training forward: grads flow, statistics neither used from the batch nor updated
    assert torch.equal(out, ref) and torch.equal(model[1].running_mean, before)
    set_train_mode(model, [], "frozen")  # nothing frozen: batch statistics, so a different output
    assert not torch.allclose(model(x), ref)


def bn_stats(model):
    return {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@pytest.fixture(scope="module")
def pretrained_bn():
    return bn_stats(ftlib.load_backbone(LITE0, num_classes=2, pretrained=True).model)


def test_frozen_batchnorm_statistics_are_bit_identical(pretrained_bn, partial1_run):
    rec, bb, _ = partial1_run
    assert rec["status"] == "ok" and rec["trainable_params"] == 414722
    after = bn_stats(bb.model)
    assert set(after) == set(pretrained_bn) and len(after) > 10
    for n, (mean, var, count) in after.items():
        m0, v0, c0 = pretrained_bn[n]
        if n == "bn2":  # the neck trains, so its BatchNorm is in train mode and moves
            assert not torch.equal(mean, m0)
            continue
        assert torch.equal(mean, m0) and torch.equal(var, v0) and torch.equal(count, c0), n
    dist = rec["block_distance"]
    assert all(d == 0.0 for b, d in dist.items() if b not in ("neck", "head")), dist
    assert dist["neck"] > 0 and dist["head"] > 0


def test_bn_train_option_moves_frozen_statistics(pretrained_bn):
    rec, bb, _ = ftlib.run(tiny(ftlib.partial(k=1, bn="train")), progress=False, return_model=True)
    after = bn_stats(bb.model)
    moved = [n for n, (mean, var, _) in after.items()
             if not (torch.equal(mean, pretrained_bn[n][0]) and torch.equal(var, pretrained_bn[n][1]))]
    assert set(moved) == set(after)  # every BatchNorm, frozen blocks included
    # still only statistics: the frozen weights themselves did not move
    assert all(d == 0.0 for b, d in rec["block_distance"].items() if b not in ("neck", "head"))


def colour_task(n_per_class=32, side=12, seed=0):
    """Three classes told apart by which colour channel is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c in range(3):
        base = torch.full((n_per_class, 3, side, side), 60.0)
        base[:, c] = 190.0
        images.append((base + 40 * torch.randn(base.shape, generator=g)).clamp(0, 255).to(torch.uint8))
        labels.append(torch.full((n_per_class,), c, dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def test_fit_lowers_the_training_loss_and_keeps_the_best_epoch():
    x, y = colour_task(seed=0)
    vx, vy = colour_task(n_per_class=10, seed=1)
    classes = ["r", "g", "b"]
    train, val = ImageTensors(x, y, classes, 12), ImageTensors(vx, vy, classes, 12)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 3))
    groups = [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.0}]
    hist = fit(model, train, val, mean=(0.5,) * 3, std=(0.5,) * 3, groups=groups, epochs=8, batch_size=16,
               seed=0, amp=False, progress=False)
    assert hist.status == "ok"
    assert len(hist.train_loss) == len(hist.val_acc) == 8
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0], hist.train_loss
    assert hist.best_val >= 0.9
    assert hist.best_epoch == int(np.argmax(hist.val_acc))
    assert hist.best_val == max(hist.val_acc)
    # the model handed back is the selected epoch's
    assert evaluate(model, val, (0.5,) * 3, (0.5,) * 3, amp=False) == hist.best_val
    assert hist.steps == 8 * (96 * 2 // 16)  # 96 images, 2 passes make an epoch of >= 128 images


def test_fit_without_val_keeps_the_last_epoch():
    x, y = colour_task(seed=0)
    train = ImageTensors(x, y, ["r", "g", "b"], 12)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 3))
    groups = [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.0}]
    hist = fit(model, train, None, mean=(0.5,) * 3, std=(0.5,) * 3, groups=groups, epochs=3, batch_size=16,
               seed=0, amp=False, progress=False)
    assert hist.best_epoch == 2 and hist.val_acc == [] and math.isnan(hist.best_val)
    assert hist.steps == 3 * (96 * 2 // 16) and hist.train_loss[-1] < hist.train_loss[0]


@pytest.mark.parametrize("augment", [True, False])
def test_without_augmentation_the_model_sees_exactly_the_stored_images(augment):
    x, y = colour_task(seed=0)
    train = ImageTensors(x, y, ["r", "g", "b"], 12)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 3))
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    groups = [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.0}]
    fit(model, train, None, mean=(0.5,) * 3, std=(0.5,) * 3, groups=groups, epochs=1, batch_size=16, seed=0,
        amp=False, progress=False, channels_last=False, augment=augment)
    stored = (x.float() / 255 - 0.5) / 0.5  # the hand computation of to_float + normalize at the stored size
    batch = torch.cat(seen)
    exact = [bool(torch.isclose(stored, b, atol=1e-6).flatten(1).all(1).any()) for b in batch]
    assert all(exact) if not augment else not all(exact)


def test_peak_memory_of_a_second_run_is_not_hidden_by_memory_the_first_one_freed():
    # ./run keeps freed memory in glibc's heap (MALLOC_MMAP_MAX_=0): a second run would reuse the first
    # one's and its resident-set growth would read ~0 MB unless the meter trims the heap first
    first = ftlib.run(tiny(ftlib.full(), seed=0), progress=False)["peak_mem_mb"]
    second = ftlib.run(tiny(ftlib.full(), seed=1), progress=False)["peak_mem_mb"]
    assert first > 5 and second > 0.5 * first, (first, second)


def test_fit_restores_the_callers_process_flags(monkeypatch):
    """fit flushes denormals (L2-SP's speed on x86) and may set cudnn.benchmark, but only while it runs."""
    before = flush_denormal_enabled(), torch.backends.cudnn.benchmark
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-denormal mode")
    x, y = colour_task(n_per_class=8, seed=0)
    train = ImageTensors(x, y, ["r", "g", "b"], 12)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    groups = [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.0}]
    inside, real = [], ftlib.train._fit
    monkeypatch.setattr(ftlib.train, "_fit", lambda *a, **k: inside.append(flush_denormal_enabled()) or real(*a, **k))
    try:
        for outside in (False, True):
            torch.set_flush_denormal(outside)
            fit(model, train, train, mean=(0.5,) * 3, std=(0.5,) * 3, groups=groups, epochs=1, batch_size=8,
                seed=0, amp=False, progress=False)
            assert flush_denormal_enabled() == outside and torch.backends.cudnn.benchmark == before[1]
        assert inside == [True, True]
        with process_flags(flush_denormal=False, cudnn_benchmark=True):
            assert torch.backends.cudnn.benchmark and not flush_denormal_enabled()
        assert torch.backends.cudnn.benchmark == before[1] and flush_denormal_enabled()
    finally:
        torch.set_flush_denormal(before[0])
        torch.backends.cudnn.benchmark = before[1]
