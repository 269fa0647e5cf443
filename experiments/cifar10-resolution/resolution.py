"""CIFAR-10's 32 px images upsampled: how much does the resolution buy lite0's linear probe?

Run: ./run python experiments/cifar10-resolution/resolution.py
"""
import time

import ftlib

for side in [48, 64, 96, 128]:
    start = time.perf_counter()
    rec = ftlib.run(ftlib.RunConfig("cifar10", strategy=ftlib.linear_probe(), shots=100, seed=0, resolution=side,
                                    max_test_per_class=50), progress=False)
    print(f"{side} px: probe test accuracy {rec['test_acc']:.3f} (C = {rec['probe_C']:g}, {rec['probe_selection']}; "
          f"source {rec['data_source']}; {time.perf_counter() - start:.0f} s)", flush=True)
