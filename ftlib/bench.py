"""The benchmark runner: a grid of runs into a resumable results store, then tables and plots.

A finished run is never recomputed: each config's hash is its key in the store, and a
row is written atomically the moment its run ends.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path

from .backbones import DEFAULT_BACKBONE, load_backbone
from .datasets import DATASETS, load_dataset
from .errors import FtlibError, unknown
from .paths import REPO_ROOT, data_root
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
        if isinstance(s, bool) or not isinstance(s, int):
            raise FtlibError(f"seeds must be integers, got {s!r}")
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
    """Where notebooks load-else-run: the committed ``results/`` store for ``cpu``, else under ``data/``.

    In the cpu profile the notebooks reuse the benchmark's finished runs, and the runs only
    they need are added beside them; the README's headline selects the main grid's run ids.
    """
    return REPO_ROOT / "results" if profile == "cpu" else data_root() / "results" / f"notebooks-{profile}"


def bench(configs: list, out, progress: bool = True, log=print) -> ResultStore:
    """Run every config not yet in the store at ``out``; write the summary; return the store."""
    store = ResultStore(out)
    check(configs)
    todo = [c for c in configs if not store.has(c.run_id())]
    log(f"[ftlib] {len(configs)} runs in the grid, {len(configs) - len(todo)} already in {store.path}, "
        f"{len(todo)} to run")
    start = time.perf_counter()
    for i, cfg in enumerate(todo, 1):
        if store.has(cfg.run_id()):  # another process (a notebook, a second bench) finished it meanwhile
            continue
        rec = run(cfg, progress=progress)
        store.add(rec)
        log(f"[ftlib] {i}/{len(todo)} {cfg.dataset} shots={cfg.shots} seed={cfg.seed} {cfg.strategy.label}: "
            f"{rec['status']} test_acc={rec['test_acc']:.3f} ({rec['train_seconds']:.0f}s; "
            f"{time.perf_counter() - start:.0f}s elapsed)")
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
