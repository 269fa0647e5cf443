"""Shared by several test modules: the backbone they use, the smallest real run, toy result records."""
import csv
import math
import os
import signal
import subprocess
import sys
import time

import ftlib

LITE0 = "timm/tf_efficientnet_lite0"
HEAD_2 = 1280 * 2 + 2  # lite0's new 2-class head


def tiny(strategy, seed=0, epochs=1, **kw):
    """The smallest real run: hymenoptera, 4 shots per class, 64 px, 10 test images per class."""
    return ftlib.RunConfig("hymenoptera", backbone=LITE0, strategy=strategy, shots=4, seed=seed, resolution=64,
                           epochs=epochs, batch_size=4, max_test_per_class=10, **kw)


def rows(out):
    """The rows of the results store at ``out`` as dicts of strings ([] before its first run)."""
    path = os.path.join(out, "results.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def sigkill_bench_after_first_row(bench_args, out, timeout: float = 300):
    """Start ``python -m ftlib bench BENCH_ARGS`` (writing to ``out``), SIGKILL it once its first row is stored."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "ftlib", "bench", *bench_args], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while len(rows(out)) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# test accuracy by (shots, strategy_label) over seeds 0, 1, 2
ACC = {
    (5, "full"): [0.50, 0.60, 0.70],
    (5, "partial(k=1)"): [0.55, 0.65, 0.62],
    ("all", "full"): [0.90, 0.92, 0.95],
    ("all", "partial(k=1)"): [0.88],  # a single seed: std is undefined
}


def records():
    """Toy finished runs (dataset 'toy', strategies full and partial(k=1), one diverged run)."""
    out = []
    for (shots, label), accs in ACC.items():
        for seed, acc in enumerate(accs):
            strategy = label.split("(")[0]
            out.append({
                "run_id": f"{shots}-{label}-{seed}", "dataset": "toy", "backbone": "tiny",
                "strategy": strategy, "strategy_label": label, "shots": shots, "seed": seed,
                "n_train": 10 if shots == 5 else 100, "num_classes": 2, "status": "ok", "val_acc": acc + 0.01, "test_acc": acc,
                "train_seconds": 10.0 * (seed + 1),
                "trainable_params": 100 if strategy == "partial" else 1000, "peak_mem_mb": 50.0,
                "curves": {"train_loss": [1.0, 0.5], "val_acc": [acc - 0.1, acc + 0.01]},
                "block_distance": {"stem": 0.0 if strategy == "partial" else 0.01,
                                   "blocks.0": 0.02, "head": 0.5},
            })
    # A diverged run: counted, never averaged.
    out.append({**out[0], "run_id": "diverged", "seed": 9, "status": "diverged",
                "test_acc": math.nan, "val_acc": 0.0, "train_seconds": 1e6})
    return out


def image_split(n_per_class=5, classes=("a", "b", "c"), channels=3, seed=0, resolution=32):
    """A split of random uint8 images, ``n_per_class`` of each class, sorted by class."""
    import torch

    from ftlib.datasets import ImageTensors

    g = torch.Generator().manual_seed(seed)
    k = len(classes)
    shape = (n_per_class * k, channels, resolution, resolution)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    labels = torch.arange(k).repeat_interleave(n_per_class)
    return ImageTensors(images, labels, list(classes), resolution)
