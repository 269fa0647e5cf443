"""Default hyper-parameters from small pure functions of the strategy and the data size (BiT's hyper-rule idea).

Every number has its source or the measurement behind it beside it. A strategy's own
``lr`` (when not None) always wins over these defaults.
"""
from __future__ import annotations

# Body learning rate for SGD (Nesterov, momentum 0.9) at batch 32; the head gets
# ``head_lr_mult`` times more. Li et al. (2018) use 0.005-0.02 at batch 64 for ResNet-101.
# Chosen on val splits only, never test, with the val runs kept out of every benchmark store:
# - hymenoptera val (lite0, full, 15 epochs, seed 0): lr 0.01 -> best val 0.95 (128 px) with val swinging
#   down to 0.70; 0.003 -> 0.975 and 0.001 -> 1.00 (160 px), both stable.
# - CIFAR-10 val, 2026-12-02 (lite0, full, 10 shots, seed 100 -- not a benchmark seed -- 20 extra val images
#   per class, 96 px, 42 steps, last epoch): lr 0.001 -> val 0.365 (final loss 0.56 ln C, under-trained);
#   0.003 -> 0.425 (0.27 ln C); 0.01 -> 0.375 (0.13 ln C: fits the shots, loses on val). So 0.003.
#   Command: RunConfig("cifar10", strategy=f"full:lr={lr}", shots=10, seed=100, resolution=96,
#   min_steps=40, max_steps=40, val_per_class=20) through ftlib.run, one per lr.
# The schedule (``train_steps``: 15 passes over the labelled set, 20-100 steps in the cpu profile) is the
# shortest that brought full fine-tuning's final training loss under 0.35 ln C on CIFAR-10 at 64 px, its
# hardest cell: 12 passes (91 steps, 25 shots, seed 0) ended at 0.33 ln C, too close to the line.
BASE_LR = {
    "partial": 0.003,
    "full": 0.003,
    "l2sp": 0.003,
    "lp_ft": 0.001,  # Kumar et al. (2022): LP-FT fine-tunes from a good head at a smaller lr
    "scratch": 0.03,  # random weights need a larger step (no pretrained features to protect)
    "bitfit": 0.003,
    "surgical": 0.003,
}
# The fixed schedule's defaults (a RunConfig's; each profile sets its own step range).
PASSES = 15.0
MIN_STEPS, MAX_STEPS = 40, 80
ADAMW_LR_SCALE = 0.1  # AdamW's per-parameter scaling wants ~10x smaller steps than SGD here
BATCH_REFERENCE = 32


def batch_size(n_train: int, cap: int = 32) -> int:
    """Batch size: ``cap`` (32, the prototype's measured sweet spot on 2 cores), at most the train set."""
    return max(2, min(cap, n_train))


def learning_rate(strategy_name: str, batch: int, optimizer: str = "sgd") -> float:
    """Linear scaling of the body lr with batch size (Goyal et al. 2017), per strategy.

    >>> learning_rate("full", 64)
    0.006
    """
    lr = BASE_LR.get(strategy_name, 0.01) * batch / BATCH_REFERENCE
    return round(lr * (ADAMW_LR_SCALE if optimizer == "adamw" else 1.0), 8)


def train_steps(n_train: int, lo: int = MIN_STEPS, hi: int = MAX_STEPS, passes: float = PASSES,
                batch: int = BATCH_REFERENCE) -> int:
    """Optimiser steps of a fixed schedule: ``passes`` passes over the labelled set, within [lo, hi].

    BiT (Kolesnikov et al. 2020) fixes the schedule from the dataset size instead of selecting
    an epoch on a val split; so do we, so that a k-shot run needs no labels beyond its k per class.

    >>> train_steps(10, 20, 100), train_steps(500, 20, 100), train_steps(200, 20, 100)
    (20, 100, 94)
    """
    return int(min(hi, max(lo, round(passes * n_train / max(1, min(batch, n_train))))))


MIN_EPOCH_IMAGES = 128  # fit's epoch shows at least this many images (several passes over a tiny train set)


def epoch_shape(n_train: int, batch: int, min_epoch_images: int = MIN_EPOCH_IMAGES) -> tuple:
    """``(passes, steps)`` of one ``fit`` epoch: shuffled passes until >= ``min_epoch_images`` images, full batches.

    The ragged last batch is dropped (a batch of 1 breaks train-mode BatchNorm).

    >>> epoch_shape(20, 32)  # 7 passes over 20 images in batches of 20
    (7, 7)
    """
    n = max(1, n_train)
    passes = max(1, -(-min_epoch_images // n))
    return passes, max(1, n * passes // max(1, min(batch, n)))


def epochs_for(steps: int, n_train: int, batch: int, min_epoch_images: int = MIN_EPOCH_IMAGES) -> int:
    """Epochs ``fit`` needs for about ``steps`` optimiser steps.

    >>> epochs_for(40, 20, 20)  # an epoch of 20 images is 7 passes = 7 steps
    6
    """
    return max(1, round(steps / epoch_shape(n_train, batch, min_epoch_images)[1]))


def warmup_steps(total_steps: int) -> int:
    """Linear warm-up over the first 10% of steps (at least 1), then cosine decay."""
    return max(1, round(0.1 * total_steps))
