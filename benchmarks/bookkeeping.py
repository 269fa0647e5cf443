"""What ``bench`` itself costs per run, training stubbed out: claim, store checks, the row written.

    ./run python -m benchmarks.bookkeeping      # prints milliseconds per run, best of 3 over 200 runs

The number that matters beside a run of seconds to minutes; it is dominated by rewriting
``results.csv`` atomically, which grows with the store.
"""
from __future__ import annotations

import tempfile
import time

import ftlib.bench as bench_module
import ftlib.executors as executors
from ftlib.runs import RunConfig


def fake_run(cfg, **kwargs) -> dict:
    return {"run_id": cfg.run_id(), "dataset": cfg.dataset, "strategy": "full", "strategy_label": "full",
            "shots": "all", "seed": cfg.seed, "status": "ok", "test_acc": 0.5, "train_seconds": 0.0,
            "curves": {"val_acc": [0.5]}, "block_distance": {"head": 1.0}}


def per_run_ms(n: int = 200, repeats: int = 3) -> list:
    """Milliseconds of bookkeeping per run for ``n`` stubbed runs into a fresh store, ``repeats`` times."""
    configs = [RunConfig("hymenoptera", strategy="full", seed=s) for s in range(n)]
    check, run = bench_module.check, executors.run
    bench_module.check, executors.run = (lambda configs: None), fake_run
    try:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            bench_module.bench(configs, tempfile.mkdtemp(), progress=False, log=lambda *a: None)
            times.append((time.perf_counter() - start) / n * 1000)
        return times
    finally:
        bench_module.check, executors.run = check, run


if __name__ == "__main__":
    times = per_run_ms()
    print(f"{min(times):.2f} ms per run (best of {len(times)}: {', '.join(f'{t:.2f}' for t in times)})")
