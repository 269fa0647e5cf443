"""A/B of ``evaluate`` with and without ``ConvAct`` (conv + ReLU6 as one oneDNN call) in the folded copy.

Hymenoptera's test split at 160 px, lite0 with a fresh 2-class head; 6 rounds, the two sides alternating
in one process, each timed on its second pass (the copy's build excluded). Run from the repository root:
    ./run python experiments/convact-eval-speed/convact_ab.py > experiments/convact-eval-speed/convact_ab.txt
"""
import statistics
import time
from unittest import mock

import torch

import ftlib.fuse as fuse
from ftlib.backbones import load_backbone
from ftlib.datasets import load_dataset
from ftlib.train import evaluate

ds = load_dataset("hymenoptera", "all", 0, 160)
torch.manual_seed(0)
bb = load_backbone("timm/tf_efficientnet_lite0", num_classes=2)
fold = fuse._fold
seconds, acc = {"ConvAct": [], "plain fold": []}, {}
for rnd in range(6):
    for side in (("ConvAct", "plain fold") if rnd % 2 == 0 else ("plain fold", "ConvAct")):
        with mock.patch.object(fuse, "_fold", lambda m, r, activations=False, s=side: fold(m, r, s == "ConvAct")):
            fuse._FOLDED.clear()
            evaluate(bb.model, ds.test, bb.mean, bb.std)  # builds the copy
            start = time.perf_counter()
            acc[side] = evaluate(bb.model, ds.test, bb.mean, bb.std)
            seconds[side].append(time.perf_counter() - start)
for side, s in seconds.items():
    print(f"{side}: seconds {[round(x, 3) for x in s]}, median {len(ds.test) / statistics.median(s):.1f} test images/s, "
          f"accuracy {acc[side]:.4f}")
print(f"speed-up (ratio of medians): {statistics.median(seconds['plain fold']) / statistics.median(seconds['ConvAct']):.3f}")
