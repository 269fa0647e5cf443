"""What the speed benchmark and its GPU item share: the fixed set-up, seeded model builds, ``fit`` as ``run`` calls it.

Example:
    >>> bb = build(2)  # lite0 with a fresh 2-class head, seeded  # doctest: +SKIP
    >>> seconds, images, history = ftlib_fit(bb, ds, Full(), epochs=1)  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
import platform
import sys
import time

import torch

from ftlib import hyper
from ftlib.backbones import DEFAULT_BACKBONE, load_backbone
from ftlib.datasets import load_dataset
from ftlib.strategies import trainable_parameters
from ftlib.train import fit

BACKBONE = DEFAULT_BACKBONE
BATCH = 32
SEED = 0
DATASET = "hymenoptera"
# both sides validate every epoch, as the tutorial does: 20 val images per class (40 for hymenoptera)
VAL_PER_CLASS = 20


def benchmark_dataset(res: int, tiny: bool):
    """Hymenoptera at ``res`` px with a val split, all shots (tiny: 4 shots, 10 test images per class)."""
    kwargs = {"max_test_per_class": 10 if tiny else None}
    if "val_per_class" in inspect.signature(load_dataset).parameters:  # val is opt-in where the argument exists
        kwargs["val_per_class"] = VAL_PER_CLASS
    return load_dataset(DATASET, 4 if tiny else "all", SEED, res, **kwargs)


def log(msg: str) -> None:
    print(f"[speed] {msg}", file=sys.stderr, flush=True)  # progress on stderr, the table on stdout


def build(num_classes: int, name: str = BACKBONE, pretrained: bool = True, device="cpu"):
    """The backbone with a fresh head, seeded: both sides of a comparison start from the same weights."""
    torch.manual_seed(SEED)
    bb = load_backbone(name, num_classes=num_classes, pretrained=pretrained)
    bb.model.to(device)
    return bb


def ftlib_fit(bb, ds, strategy, epochs: int, amp: bool = True, channels_last: bool = True, batch: int = BATCH,
              min_epoch_images: int = 0) -> tuple:
    """``ftlib.fit`` as ``ftlib.run`` calls it; returns ``(seconds, train images seen, history)``.

    ``min_epoch_images=0``: one epoch is exactly one pass over train, as in the tutorial.
    """
    for p in bb.model.parameters():
        p.requires_grad_(False)
    for _, p, _ in trainable_parameters(bb, strategy):
        p.requires_grad_(True)
    groups = strategy.param_groups(bb, strategy.learning_rate(batch))
    start = time.perf_counter()
    hist = fit(bb.model, ds.train, ds.val, mean=bb.mean, std=bb.std, groups=groups, epochs=epochs, batch_size=batch,
               seed=SEED, bn=strategy.bn, amp=amp, channels_last=channels_last, progress=False,
               min_epoch_images=min_epoch_images)
    secs = time.perf_counter() - start  # fit ends on host syncs (the epoch loss, the val logits)
    n = len(ds.train)
    bs = min(batch, n)  # fit drops the ragged last batch: count only the images it trained on
    steps = max(1, n * max(1, math.ceil(min_epoch_images / n)) // bs)
    return secs, steps * bs * len(hist.train_loss), hist


def machine() -> dict:
    """The machine a measurement ran on, written beside every number."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu_model": cpu,
            "torch_version": str(torch.__version__), "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_1_5_15min": os.getloadavg(),
            "malloc_env": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")}}
