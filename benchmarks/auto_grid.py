"""``python -m benchmarks.auto_grid``: ``--strategy auto`` over the main grid, against the best fixed strategy.

For every cell (dataset, labelled images per class) and seed of the ``cpu`` profile's main grid this runs
``ftlib.auto.choose_strategy`` on that cell's labelled training images, as ``ftlib train --strategy auto``
does, and appends its choice, every candidate's held-out score and what choosing cost to a store
(``results/auto.jsonl`` by default). The test split is never loaded into the choice.

The refit -- the chosen strategy trained on every labelled image with the profile's schedule -- is the main
grid's own run of that strategy and seed, so auto's test accuracy and training time in a cell are read from
the main-grid store; ``ftlib.report.auto_regret`` joins the two and ``./run readme`` writes the table into
docs/results.md.

Example:
    ./run python -m benchmarks.auto_grid                  # the whole grid, resuming what the store holds
    ./run python -m benchmarks.auto_grid --datasets hymenoptera --seeds 0
    ./run python -m benchmarks.auto_grid --rechoose      # a new tie order applied to the stored candidates
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from ftlib import auto, hyper
from ftlib.bench import grid
from ftlib.errors import FtlibError
from ftlib.runs import prepare_run
from ftlib.version import __version__

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "results" / "auto.jsonl"
# what a stored choice was made under: a change to any of these makes the store's rows stale
RULE = {"candidate_strategies": list(auto.CANDIDATES), "holdout_fraction": auto.HOLDOUT_FRACTION,
        "candidate_schedule": auto.CANDIDATE_SCHEDULE, "schedule": hyper.SCHEDULE, "preference": list(auto.PREFERENCE)}
# what the held-out scores depend on; the winner is a pure function of them and ``auto.one_standard_error``
TRAINING = [k for k in RULE if k != "preference"]


def cells(profile: str = "cpu", datasets=None, seeds=None) -> list:
    """One config per (dataset, shots, seed) of ``profile``'s grid: its full fine-tuning run (data and schedule)."""
    out = {}
    for cfg in grid(profile, datasets=datasets, seeds=seeds):
        out.setdefault((cfg.dataset, str(cfg.shots), cfg.seed), cfg)
    return list(out.values())


def _key(cfg) -> dict:
    return {"dataset": cfg.dataset, "shots": str(cfg.shots), "seed": cfg.seed, "resolution": cfg.resolution,
            "backbone": cfg.backbone, **RULE}


def read(path=STORE) -> list:
    """The stored choices (a missing store is empty)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pending(configs: list, rows: list) -> list:
    """The configs no stored row answers under the current rule (a row made under another rule is stale)."""
    done = [{k: r.get(k) for k in _key(c)} for c in configs[:1] for r in rows]
    return [c for c in configs if _key(c) not in done]


def rechoose(rows: list) -> list:
    """``rows`` with each winner chosen again from its stored candidates by the current rule (no training):
    a change of the tie order alone does not retrain the candidates it orders."""
    out = []
    for r in rows:
        r = {"candidate_strategies": [c["strategy"] for c in r.get("candidates", [])], **r}
        if all(r.get(k) == v for k, v in RULE.items() if k in TRAINING):
            win, why = auto.one_standard_error(r["candidates"])
            r = {**r, "winner": r["candidates"][win]["strategy"], "why": why, "preference": RULE["preference"]}
        out.append(r)
    return out


def choose(cfg, threads: int | None = None) -> dict:
    """``choose_strategy`` on ``cfg``'s labelled training images, with the final schedule ``train`` would use."""
    if threads:
        torch.set_num_threads(threads)
    ds, bb, resolved = prepare_run(cfg)
    del bb
    steps = resolved["epochs"] * hyper.epoch_shape(len(ds.train), resolved["batch_size"])[1]
    start = time.perf_counter()
    evidence = auto.choose_strategy(ds, backbone=cfg.backbone, seed=cfg.seed, final_steps=steps)  # reads ds.train only
    return {**_key(cfg), "winner": evidence["winner"], "why": evidence["why"],
            "candidates": evidence["candidates"], "held_out_images": evidence["held_out_images"],
            "inner_train_images": evidence["inner_train_images"], "candidate_steps": evidence["candidate_steps"],
            "final_steps": evidence["final_steps"], "selection_seconds": evidence["selection_seconds"],
            "wall_seconds": time.perf_counter() - start, "torch_threads": torch.get_num_threads(),
            "ftlib_version": __version__,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.auto_grid", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--datasets", default=None, help="comma list (default: the profile's)")
    p.add_argument("--seeds", default=None, help="comma list of integers (default: the profile's)")
    p.add_argument("--jobs", default=2, type=int,
                   help="worker processes, torch's threads split between them (default 2: the main job's "
                        "conditions, so that choosing's seconds compare with the grid's train_seconds)")
    p.add_argument("--rechoose", action="store_true",
                   help="choose every stored row's winner again from its stored candidates by the current rule, "
                        "without training, then go on with what is missing")
    p.add_argument("--out", default=str(STORE), help=f"the store to append to (default: {STORE.relative_to(ROOT)})")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        todo = cells(a.profile, a.datasets.split(",") if a.datasets else None,
                     [int(s) for s in a.seeds.split(",")] if a.seeds else None)
    except (FtlibError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.rechoose and Path(a.out).is_file():
        text = "".join(json.dumps(r, default=float) + "\n" for r in rechoose(read(a.out)))
        tmp = Path(a.out).with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(a.out)
    todo = pending(todo, read(a.out))
    print(f"[auto-grid] {len(todo)} cells x seeds to choose in; appending to {a.out}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    threads = max(1, torch.get_num_threads() // max(1, a.jobs))
    with ProcessPoolExecutor(max(1, a.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(choose, cfg, threads) for cfg in todo]
        for i, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            with open(a.out, "a", encoding="utf-8") as f:  # only this process writes the store
                f.write(json.dumps(row, default=float) + "\n")
            print(f"[auto-grid] {i}/{len(todo)} {row['dataset']} shots={row['shots']} seed={row['seed']}: "
                  f"{row['winner']} ({row['selection_seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
