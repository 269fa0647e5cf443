"""LP-FT in the gpu profile: which of bf16 autocast, the BatchNorm policy or the lr makes it collapse.

Run on a CUDA machine from the repository root (output: lpft_gpu.jsonl in $OUT, kept here as
lpft_diagnosis.jsonl; 12 runs, 206 s on an H200 on 2026-11-26):
    PYTHONPATH=$PWD FTLIB_DATA=$PWD/data OUT=/tmp python3 experiments/lpft-collapse-gpu/lpft_diagnosis.py
The three cells are the ones whose default-lr LP-FT run collapsed in results/gpu/fashion_mnist.
Written for ftlib 0.1.0's RunConfig (image_budget, min_epochs, max_epochs); see README.md here.
"""
import json, os, sys, time, torch
from ftlib.runs import RunConfig, run
out = os.environ.get("OUT", "/tmp")
variants = [("lp_ft", True), ("lp_ft", False), ("lp_ft:bn=frozen", True), ("lp_ft:lr=0.0003", True)]
cells = [(10, 2), (100, 1), (10, 0)]
t0 = time.time()
with open(f"{out}/lpft_gpu.jsonl", "w") as f:
    for shots, seed in cells:
        for strat, amp in variants:
            cfg = RunConfig("fashion_mnist", strategy=strat, shots=shots, seed=seed, resolution=224, image_budget=8000,
                            min_epochs=5, max_epochs=30, amp=amp, max_test_per_class=100, profile="gpu")
            r = run(cfg, progress=False)
            keep = {k: r[k] for k in ("strategy_label", "shots", "seed", "lr", "epochs", "probe_C", "val_acc", "test_acc", "train_seconds")}
            keep.update(amp=amp, train_loss=[round(x, 3) for x in r["curves"]["train_loss"]],
                        val_curve=[round(x, 3) for x in r["curves"]["val_acc"]])
            f.write(json.dumps(keep) + "\n"); f.flush()
            print(f"{strat:18s} amp={amp!s:5s} shots={shots:3d} seed={seed} C={r['probe_C']:.4g} val={r['val_acc']:.3f} "
                  f"test={r['test_acc']:.3f} loss[:6]={keep['train_loss'][:6]} ({time.time()-t0:.0f}s)", flush=True)
