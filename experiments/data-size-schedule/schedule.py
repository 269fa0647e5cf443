"""How many passes over the labelled set does pretrained fine-tuning need to train, at each data size?

Val splits only (seed 100, not a benchmark seed; 20 extra labelled val images per class), never test.
Each row: a strategy at a fixed number of optimiser steps; final training loss / ln C, val accuracy
of the last epoch, seconds.

Run: ./run python experiments/data-size-schedule/schedule.py [dataset shots res strategy steps[@batch] ...]
"""
import json
import math
import sys
import time

import ftlib

def one(dataset, shots, res, strategy, steps, batch=None):
    t = time.perf_counter()
    rec = ftlib.run(ftlib.RunConfig(dataset, strategy=strategy, shots=shots, seed=100, resolution=res,
                                    min_steps=steps, max_steps=steps, batch_size=batch, val_per_class=20, max_test_per_class=1),
                    progress=False)
    out = {"dataset": dataset, "shots": shots, "res": res, "strategy": strategy, "steps": rec["steps"], "batch": rec["batch_size"], "lr": rec["lr"],
           "n_train": rec["n_train"], "passes": round(rec["steps"] * rec["batch_size"] / rec["n_train"], 1),
           "loss_lnC": round(rec["final_train_loss"] / math.log(rec["num_classes"]), 3),
           "last_val": round(rec["curves"]["val_acc"][-1], 3), "seconds": round(time.perf_counter() - t, 1)}
    print(json.dumps(out), flush=True)
    return out

if __name__ == "__main__":
    a = sys.argv[1:]
    for i in range(0, len(a), 5):
        d, k, r, s, n = a[i:i + 5]
        steps, _, batch = n.partition("@")  # STEPS or STEPS@BATCH
        one(d, k if k == "all" else int(k), int(r), s, int(steps), int(batch) if batch else None)
