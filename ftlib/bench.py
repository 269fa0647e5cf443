"""The benchmark runner: a grid of runs into a resumable results store, then its summary page.

A finished run is never recomputed: each config's hash is its key in the store, and a
row is written atomically the moment its run ends. Where runs execute (this process, local
workers, a Ray cluster) is the executor's job (``ftlib.executors``).
"""
from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

from .backbones import DEFAULT_BACKBONE, load_backbone
from .datasets import clear_memory, load_dataset
from .errors import FtlibError
from .executors import LocalExecutor
from .cache import clean_stale_tmp
from .page import write_summary
from .paths import data_root, writable_dir
from .profiles import get_profile, strategies_at
from .report import summary_table, to_markdown
from .runs import RunConfig
from .sources import check_outside
from .splits import parse_shots
from .store import FAILED, ResultStore
from .strategies import parse_strategy

_LOG = logging.getLogger(__name__)


def grid(profile: str = "cpu", datasets=None, backbone: str = DEFAULT_BACKBONE, strategies=None, shots=None,
         seeds=None, resolution: int | None = None, epochs: int | None = None, passes: float | None = None) -> list:
    """The run configs of a benchmark: datasets x shots x seeds x strategies (profile defaults for None).

    ``passes`` (over the labelled images) replaces the profile's schedule; ``epochs`` fixes ``fit``'s epochs.

    Example:
        >>> len(grid("smoke"))
        18
    """
    prof = get_profile(profile)
    datasets = list(prof.datasets if datasets is None else datasets)
    parse = lambda names: [parse_strategy(s) if isinstance(s, str) else s for s in names]  # noqa: E731
    chosen = None if strategies is None else parse(strategies)
    if chosen is not None and not chosen:
        raise FtlibError("empty list of strategies")
    seeds = list(prof.seeds if seeds is None else seeds)
    for what, items in (("datasets", datasets), ("seeds", seeds)):
        if not items:
            raise FtlibError(f"empty list of {what}")
    # every value is checked once, by RunConfig itself
    configs, extra = [], ({} if passes is None else {"passes": float(passes)})
    for d in datasets:
        regimes = [parse_shots(k) for k in (prof.shots.get(d, (10, "all")) if shots is None else shots)]
        if not regimes:
            raise FtlibError("empty list of shots")
        res = resolution if resolution is not None else \
            (prof.resolution.get(d) or load_backbone(backbone, pretrained=False).input_size)
        for k, seed in itertools.product(regimes, seeds):
            for strat in chosen if chosen is not None else parse(strategies_at(prof, k)):
                configs.append(RunConfig(
                    dataset=d, backbone=backbone, strategy=strat, shots=k, seed=seed, resolution=res,
                    epochs=epochs or prof.epochs, max_test_per_class=prof.max_test_per_class.get(d),
                    min_steps=prof.min_steps, max_seconds=prof.max_seconds, val_per_class=prof.val_per_class,
                    profile=prof.name, **extra))
    return configs


def main_grid_ids() -> set:
    """The run ids of the main grid: the ``cpu`` profile's default grid, the one the README reports."""
    return {c.run_id() for c in grid("cpu")}


def main_grid(df):
    """The main grid's rows of a results frame (notebook and other runs left out), index reset."""
    return df[df.run_id.isin(main_grid_ids())].reset_index(drop=True) if len(df) else df


def check(configs: list) -> None:
    """Fail before training anything: unknown backbone, shots larger than a class, unreadable data."""
    for d in {c.dataset for c in configs}:
        try:  # every record is written as UTF-8 text (results.csv, summary.md): a name that is not cannot be stored
            str(d).encode("utf-8")
        except UnicodeEncodeError:
            shown = str(d).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise FtlibError(f"dataset '{shown}': its path is not valid UTF-8, so results.csv could not record it; "
                             "give it a UTF-8 name, e.g. ln -s <that folder> /tmp/my-images and use "
                             "imagefolder:/tmp/my-images") from None
    for backbone in {c.backbone for c in configs}:
        load_backbone(backbone, pretrained=False)
    for d, k, res, cap in {(c.dataset, c.shots, c.resolution, c.max_test_per_class) for c in configs}:
        load_dataset(d, shots=k, seed=0, resolution=res, max_test_per_class=cap)


def default_out(profile: str) -> Path:
    return data_root() / "results" / profile


def default_store(profile: str) -> Path:
    """Where ``load_or_run`` stores runs when given no ``out``: ``<cache root>/results/notebooks-<profile>``.

    Never the committed ``results/`` store: a caller that means to read and extend it names it,
    ``load_or_run(configs, out=ftlib.paths.CLONE_ROOT / "results")``.
    """
    return data_root() / "results" / f"notebooks-{profile}"


def notebook_store(profile: str | None = None) -> Path:
    """The store the notebooks read and extend: in a clone, in the ``cpu`` profile, the committed ``results/``
    (the main grid's runs are read, not retrained, and the notebooks' own runs are kept beside them);
    otherwise ``default_store(profile)``. Notebooks pass it explicitly: ``load_or_run(configs, out=...)``."""
    from .paths import CLONE_ROOT

    profile = profile or notebook_profile()
    return CLONE_ROOT / "results" if profile == "cpu" and CLONE_ROOT else default_store(profile)


def bench(configs: list, out, progress: bool = True, log=_LOG.info, jobs: int = 1, executor=None) -> ResultStore:
    """Run every config not yet in the store at ``out``; write the summary; return the store.

    ``executor`` says where runs execute (``ftlib.executors``): by default in this process, or in
    ``jobs`` local worker processes. Whatever the executor, only this process writes the store, a
    row the moment its run returns, so a rerun of the same command resumes. Each run is claimed
    (``ResultStore.claim``) until its row is written: a second bench on the same store skips it,
    then waits for it at the end and trains it only if the other process did not store it.
    """
    executor = executor or LocalExecutor(jobs)
    check_outside(out, {c.dataset for c in configs})  # its plots would become images of a class named after it
    store = ResultStore(writable_dir(out, "choose a writable results folder with --out"))
    clean_stale_tmp(store.path)  # what a killed write of results.csv left behind
    store.check_profile({c.profile for c in configs})  # one --out, one profile: cells never mix budgets
    check(configs)
    stale = store.retire_changed({c.dataset: c.folder()["folder_fingerprint"] for c in configs if c.folder()})
    if stale:
        log(f"[ftlib] {stale} stored runs were trained on other files than their image folder holds now (images "
            "added, removed or changed, or another folder of that name): kept in results.csv as 'stale', left out "
            "of the tables, and trained anew")
    todo = [c for c in configs if not store.has(c.run_id())]
    log(f"[ftlib] {len(configs)} runs in the grid, {len(configs) - len(todo)} already in {store.path}, "
        f"{len(todo)} to run" + (executor.where() if todo else ""))
    if not todo:
        return store
    if not executor.in_process:
        clear_memory()  # check() decoded every dataset here; the runs decode their own
    start, count, held, busy = time.perf_counter(), {"done": 0, "failed": 0}, {}, []

    def drain(claimed):
        for cfg, rec in executor.run(claimed, progress=progress):
            added = store.add(rec)  # False: a retried task that had finished already; dropped
            held.pop(cfg.run_id()).close()
            count["done"] += 1
            count["failed"] += rec["status"] == FAILED
            log(_line(count["done"], len(todo), cfg, rec, time.perf_counter() - start)
                + ("" if added else " (already stored, dropped)"))

    try:
        drain(_claimed(todo, store, held, busy, wait=False))
        if busy:
            log(f"[ftlib] waiting for {len(busy)} runs that another process on {store.path} is training")
            drain(_claimed(busy, store, held, [], wait=True))
    finally:
        for claim in held.values():
            claim.close()
    if count["failed"]:
        log(f"[ftlib] {count['failed']} runs failed; their rows hold the error (ResultStore.failures()); "
            "rerun the same command to retry them")
    return store


def _claimed(configs, store: ResultStore, held: dict, busy: list, wait: bool):
    """Yield the configs this process claims, one at a time, so an executor that takes them one by
    one claims each just before training it; ``held`` gets the claims, ``busy`` what others hold."""
    for cfg in configs:
        rid = cfg.run_id()
        if store.has(rid):  # another process finished it meanwhile
            continue
        claim = store.claim(rid, wait=wait)
        if claim is None:
            busy.append(cfg)
        elif store.has(rid):  # finished between the check and the claim
            claim.close()
        else:
            held[rid] = claim
            yield cfg


def _line(i: int, n: int, cfg: RunConfig, rec: dict, elapsed: float) -> str:
    what = f"[ftlib] {i}/{n} {cfg.dataset} shots={cfg.shots} seed={cfg.seed} {cfg.strategy.label}: "
    if rec["status"] == FAILED:
        return what + f"failed: {rec['error']} ({elapsed:.0f}s elapsed)"
    capped = " UNDER-TRAINED: the time budget cut its schedule short, not a result;" if rec.get("time_capped") else ""
    return what + (f"{rec['status']}{capped} test_acc={rec['test_acc']:.3f} ({rec['train_seconds']:.0f}s; "
                   f"{elapsed:.0f}s elapsed)")


def notebook_profile() -> str:
    """The profile notebooks run in: ``$FTLIB_PROFILE`` (the tests set ``smoke``), else ``cpu``."""
    import os

    return os.environ.get("FTLIB_PROFILE", "cpu")


def load_or_run(configs: list, out=None, progress: bool = False):
    """Load-else-run for notebooks: run only the configs missing from the store, return their rows.

    ``out`` is the store; without it, ``default_store(notebook_profile())``, outside the committed
    ``results/`` (name that one explicitly to read and extend it). Returns ``(df, sidecar)``: the
    results DataFrame restricted to ``configs`` (in the store's column layout) and the curves /
    block distances keyed by run id.

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


def summarise(store: ResultStore, log=_LOG.info) -> dict:
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
