"""The benchmark runner: a grid of runs into a resumable results store, then tables and plots.

A finished run is never recomputed: each config's hash is its key in the store, and a
row is written atomically the moment its run ends.
"""
from __future__ import annotations

import itertools
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from .backbones import DEFAULT_BACKBONE, load_backbone
from .datasets import DATASETS, check_resolution, clear_memory, load_dataset
from .errors import FtlibError, unknown
from .paths import CLONE_ROOT, clean_stale_tmp, data_root, writable_dir
from .profiles import get_profile
from .report import summary_table, to_markdown, write_summary
from .runs import RunConfig, run
from .splits import parse_shots
from .store import ResultStore
from .strategies import parse_strategy


def grid(profile: str = "cpu", datasets=None, backbone: str = DEFAULT_BACKBONE, strategies=None, shots=None,
         seeds=None, resolution: int | None = None, epochs: int | None = None) -> list:
    """The run configs of a benchmark: datasets x shots x seeds x strategies (profile defaults for None).

    Example:
        >>> len(grid("smoke"))
        18
    """
    prof = get_profile(profile)
    datasets = list(prof.datasets if datasets is None else datasets)
    strategies = [parse_strategy(s) if isinstance(s, str) else s
                  for s in (prof.strategies if strategies is None else strategies)]
    seeds = list(prof.seeds if seeds is None else seeds)
    for what, items in (("datasets", datasets), ("strategies", strategies), ("seeds", seeds)):
        if not items:
            raise FtlibError(f"empty list of {what}")
    for d in datasets:
        if d not in DATASETS and not str(d).startswith("imagefolder:"):
            raise unknown("dataset", d, [*DATASETS, "imagefolder:<path>"])
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise FtlibError(f"seeds must be integers >= 0, got {s!r}")
    if resolution is not None:
        check_resolution(resolution)
    configs = []
    for d in datasets:
        regimes = [parse_shots(k) for k in (prof.shots.get(d, (10, "all")) if shots is None else shots)]
        if not regimes:
            raise FtlibError("empty list of shots")
        res = resolution or prof.resolution.get(d) or load_backbone(backbone, pretrained=False).input_size
        for k, seed, strat in itertools.product(regimes, seeds, strategies):
            configs.append(RunConfig(
                dataset=d, backbone=backbone, strategy=strat, shots=k, seed=seed, resolution=res,
                epochs=epochs or prof.epochs, max_test_per_class=prof.max_test_per_class.get(d),
                image_budget=prof.image_budget, min_epochs=prof.min_epochs, max_epochs=prof.max_epochs,
                profile=prof.name))
    return configs


def check(configs: list) -> None:
    """Fail before training anything: unknown backbone, shots larger than a class, unreadable data."""
    for backbone in {c.backbone for c in configs}:
        load_backbone(backbone, pretrained=False)
    for d, k, res, cap in {(c.dataset, c.shots, c.resolution, c.max_test_per_class) for c in configs}:
        load_dataset(d, shots=k, seed=0, resolution=res, max_test_per_class=cap)


def default_out(profile: str) -> Path:
    return data_root() / "results" / profile


def default_store(profile: str) -> Path:
    """Where notebooks load-else-run: in a clone the committed ``results/`` store for ``cpu``, else
    ``<cache root>/results/notebooks-<profile>``.

    In the cpu profile the notebooks reuse the benchmark's finished runs, and the runs only
    they need are added beside them; the README's headline selects the main grid's run ids.
    """
    if profile == "cpu" and CLONE_ROOT:
        return CLONE_ROOT / "results"
    return data_root() / "results" / f"notebooks-{profile}"


# ``bench --jobs N``: N worker processes, torch's threads split between them. Measured on this 2-core
# machine (12 cpu-profile runs, hymenoptera + Fashion-MNIST 10-shot, seed 0): 303 s with one process of
# two threads, 275 s with two single-threaded workers (1.10x): side by side each run is ~1.6x slower,
# the two cores sharing one memory bus. Each worker holds its own model, activations and decoded
# datasets, and a run's float rounding depends on its thread count (``torch_threads`` is recorded), so
# the default stays one process: a rerun reproduces the committed store run for run.


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    try:  # Linux: die with the parent (a killed bench leaves no orphan training on)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_in_worker(cfg: RunConfig, out: str):
    """One run in a worker process; the worker writes its own row (the store locks), so a finished run
    is kept even if the parent dies. None when another process finished it meanwhile."""
    store = ResultStore(out)
    if store.has(cfg.run_id()):
        return None
    rec = run(cfg, progress=False)
    store.add(rec)
    return rec


def bench(configs: list, out, progress: bool = True, log=print, jobs: int = 1) -> ResultStore:
    """Run every config not yet in the store at ``out``; write the summary; return the store.

    ``jobs`` > 1 runs that many worker processes (``torch`` threads split between them), each
    taking the next pending run; rows land in the store in completion order, and a rerun of the
    same command resumes either way.
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise FtlibError(f"jobs must be a positive integer, got {jobs!r}")
    store = ResultStore(writable_dir(out, "choose a writable results folder with --out"))
    clean_stale_tmp(store.path)  # what a killed write of results.csv left behind
    check(configs)
    todo = [c for c in configs if not store.has(c.run_id())]
    log(f"[ftlib] {len(configs)} runs in the grid, {len(configs) - len(todo)} already in {store.path}, "
        f"{len(todo)} to run" + (f" in {jobs} worker processes" if jobs > 1 else ""))
    start = time.perf_counter()

    def done(i, cfg, rec):
        log(f"[ftlib] {i}/{len(todo)} {cfg.dataset} shots={cfg.shots} seed={cfg.seed} {cfg.strategy.label}: "
            f"{rec['status']} test_acc={rec['test_acc']:.3f} ({rec['train_seconds']:.0f}s; "
            f"{time.perf_counter() - start:.0f}s elapsed)")

    if jobs == 1 or not todo:
        for i, cfg in enumerate(todo, 1):
            if store.has(cfg.run_id()):  # another process (a notebook, a second bench) finished it meanwhile
                continue
            rec = run(cfg, progress=progress)
            store.add(rec)
            done(i, cfg, rec)
        return store
    clear_memory()  # check() decoded every dataset here; the workers hold their own copies
    threads = max(1, torch.get_num_threads() // jobs)
    ctx = multiprocessing.get_context("spawn")  # fork after torch has started its thread pools can hang
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_start_worker, initargs=(threads,)) as pool:
        pending = {pool.submit(_run_in_worker, cfg, str(store.path)): cfg for cfg in todo}
        finished = 0
        try:
            while pending:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in ready:
                    cfg = pending.pop(fut)
                    rec = fut.result()  # a worker's exception is raised here; finished rows stay stored
                    finished += 1
                    if rec is not None:
                        done(finished, cfg, rec)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return store


def notebook_profile() -> str:
    """The profile notebooks run in: ``$FTLIB_PROFILE`` (the tests set ``smoke``), else ``cpu``."""
    import os

    return os.environ.get("FTLIB_PROFILE", "cpu")


def load_or_run(configs: list, out=None, progress: bool = False):
    """Load-else-run for notebooks: run only the configs missing from the store, return their rows.

    Returns ``(df, sidecar)``: the results DataFrame restricted to ``configs`` (in the store's
    column layout) and the curves / block distances keyed by run id.

    Example:
        >>> df, side = load_or_run(grid("smoke", datasets=["hymenoptera"]))  # doctest: +SKIP
    """
    if out is None:
        out = default_store(notebook_profile())
    store = bench(configs, out, progress=progress, log=lambda *a: None)
    ids = {c.run_id() for c in configs}
    df = store.frame()
    side = store.sidecar()
    if len(df):
        df = df[df.run_id.isin(ids)].reset_index(drop=True)
    return df, {k: v for k, v in side.items() if k in ids}


def report(store: ResultStore, log=print) -> dict:
    """Write ``summary.md`` and the PNGs; print the table and the paths."""
    paths = write_summary(store.path)
    df = store.frame()
    if len(df):
        cols = ["test_acc", "n_seeds", "train_seconds", "trainable_params", "peak_mem_mb"]
        log(to_markdown(summary_table(df), columns=cols))
    log("[ftlib] wrote:")
    for p in [store.path / "results.csv", store.path / "runs.jsonl", *paths.values()]:
        log(f"  {p}")
    return paths
