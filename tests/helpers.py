"""Shared by several test modules: the backbone they use and the smallest real run."""
import csv
import os

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
