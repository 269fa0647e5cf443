"""Default hyper-parameters from small pure functions of the strategy and the data size (BiT's hyper-rule idea).

Every number has its source or the measurement behind it beside it. A strategy's own
``lr`` (when not None) always wins over these defaults.
"""
from __future__ import annotations

# Body learning rate for SGD (Nesterov, momentum 0.9) at batch 32; the head gets
# ``head_lr_mult`` times more. Li et al. (2018) use 0.005-0.02 at batch 64 for ResNet-101.
# Measured on hymenoptera *val* (lite0, full, 15 epochs, seed 0): lr 0.01 -> best val 0.95
# (128 px) with val swinging down to 0.70; 0.003 -> 0.975 and 0.001 -> 1.00 (160 px), both stable.
BASE_LR = {
    "partial": 0.003,
    "full": 0.003,
    "l2sp": 0.003,
    "lp_ft": 0.001,  # Kumar et al. (2022): LP-FT fine-tunes from a good head at a smaller lr
    "scratch": 0.03,  # random weights need a larger step (no pretrained features to protect)
    "bitfit": 0.003,
    "surgical": 0.003,
}
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


def epochs(n_train: int, budget_images: int = 4000, lo: int = 3, hi: int = 15) -> int:
    """Epochs so a run sees about ``budget_images`` images, between ``lo`` and ``hi`` epochs.

    BiT scales the schedule with dataset size; on a CPU we fix the image budget instead,
    so few-shot runs get more epochs and many-shot runs fewer.

    >>> epochs(200), epochs(2000), epochs(20)
    (15, 3, 15)
    """
    return int(min(hi, max(lo, round(budget_images / max(1, n_train)))))


def warmup_steps(total_steps: int) -> int:
    """Linear warm-up over the first 10% of steps (at least 1), then cosine decay."""
    return max(1, round(0.1 * total_steps))
