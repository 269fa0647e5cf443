"""Default hyper-parameters from small pure functions of the strategy and the data size (BiT's hyper-rule idea).

Every number has its source or the measurement behind it beside it. A strategy's own
``lr`` (when not None) always wins over these defaults.
"""
from __future__ import annotations

# Base learning rates belong to the strategies (``Strategy.base_lr`` in ftlib/strategies.py, with the val runs
# that chose them); this module only scales them.
# The schedule (``train_steps``): PASSES passes over the labelled set at every data size, at least MIN_STEPS
# optimiser steps, and no step cap: where a run must be bounded, the bound is a stated time budget
# (``RunConfig.max_seconds``), and a run it cuts short is recorded as under-trained, never as a result.
# Chosen on val splits (seed 100, 20 extra val images per class; experiments/data-size-schedule/):
# - the 20-shot cells: 12 passes (91 steps, CIFAR-10 64 px, 25 shots) ended full fine-tuning at 0.33 ln C,
#   too close to the 0.35 line; 15 passes brought every 5- and 20-shot cell under it.
# - 100 shots per class (CIFAR-10, full, lr 0.003): 5 passes -> 0.55 ln C, 10 passes -> 0.40 ln C at 64 px
#   (both under-trained), 15 passes -> 0.31 ln C at 48 px; lr 0.01 at 6 passes -> 0.62 ln C, so a larger step
#   does not buy the missing passes. Steps therefore grow linearly with the data (BiT's rule also grows them
#   with the dataset size), not a fixed count.
# The schedule's defaults (a RunConfig's; a profile may set its own floor and time budget).
PASSES = 15.0
MIN_STEPS = 20
ADAMW_LR_SCALE = 0.1  # AdamW's per-parameter scaling wants ~10x smaller steps than SGD here
BATCH_REFERENCE = 32  # the batch the strategies' base learning rates were chosen at
BATCH_MAX = 128
MIN_STEPS_PER_PASS = 7  # the batch doubles (up to BATCH_MAX) only while a pass keeps this many steps
# Names the rules above; part of every run's id, so that a store never serves a run made under other rules.
SCHEDULE = f"batch-{BATCH_REFERENCE}-{BATCH_MAX}-{MIN_STEPS_PER_PASS}"  # passes and min_steps are config fields


def batch_size(n_train: int, lo: int = BATCH_REFERENCE, hi: int = BATCH_MAX) -> int:
    """Batch size: the largest of ``lo``, 2·``lo``, … ``hi`` that keeps ``MIN_STEPS_PER_PASS`` steps per pass.

    Below 500 labelled images that is 32 (the prototype's measured sweet spot on 2 cores; all the images
    when there are fewer); 64 from 500, 128 from 1,000, with the learning rate scaled linearly
    (``learning_rate``). Measured on val splits (experiments/data-size-schedule/, seed 100): CIFAR-10 at 100
    images per class, 48 px, 15 passes, full fine-tuning ends at 0.23 ln C with batch 128 (lr 0.012),
    0.26 with 64, 0.31 with 32; LP-FT, partial(k=2) and Fashion-MNIST train at 128 too (0.17, 0.15,
    0.14 ln C). A training step of batch 128 at 48 px processes 1.35x the images per second of batch 32
    on 2 cores (experiments/cpu-step-levers/).

    >>> batch_size(10), batch_size(244), batch_size(500), batch_size(1000), batch_size(3453)
    (10, 32, 64, 128, 128)
    """
    bs = lo
    while bs * 2 <= hi and n_train / (bs * 2) >= MIN_STEPS_PER_PASS:
        bs *= 2
    return max(2, min(bs, n_train))


def learning_rate(base_lr: float, batch: int, optimizer: str = "sgd") -> float:
    """Linear scaling of a strategy's base lr (at batch ``BATCH_REFERENCE``) with batch size (Goyal et al. 2017).

    >>> learning_rate(0.003, 64)
    0.006
    """
    lr = base_lr * batch / BATCH_REFERENCE
    return round(lr * (ADAMW_LR_SCALE if optimizer == "adamw" else 1.0), 8)


def train_steps(n_train: int, lo: int = MIN_STEPS, passes: float = PASSES, batch: int = BATCH_REFERENCE) -> int:
    """Optimiser steps of the schedule: ``passes`` passes over the labelled set, at least ``lo``.

    BiT (Kolesnikov et al. 2020) fixes the schedule from the dataset size instead of selecting
    an epoch on a val split; so do we, so that a k-shot run needs no labels beyond its k per class.
    The steps grow with the data; there is no step cap (a time budget bounds a run instead).

    >>> train_steps(10), train_steps(200), train_steps(1000)
    (20, 94, 469)
    """
    return int(max(lo, round(passes * n_train / max(1, min(batch, n_train)))))


def passes_of(steps: int, batch: int, n_train: int) -> float:
    """Passes over the labelled set that ``steps`` optimiser steps of ``batch`` images make.

    >>> passes_of(469, 32, 1000)
    15.01
    """
    return round(steps * min(batch, max(1, n_train)) / max(1, n_train), 2)


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
