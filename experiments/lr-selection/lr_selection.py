"""Does choosing the learning rate inside the labelled budget change any strategy's rank in the grid?

For each dataset x shots x seed x gradient strategy of the cpu grid's few-shot sizes: hold out 30% of each
class's k labelled training images (ftlib.auto.holdout_split; the test split is never read), train the
strategy on the rest at lr = base/3, base, 3*base for the full schedule (hyper.train_steps of the inner
set), score on the held-out images, choose by the one-standard-error rule towards the default (base) lr --
the rule the probe uses for its C -- and refit the chosen lr on all k images (ftlib.run). Beside it, the
fixed-lr run of the main grid's protocol. One JSON line per cell.

Run: ./run python experiments/lr-selection/lr_selection.py 5 20 > experiments/lr-selection/lr_selection.jsonl
(``--resume FILE`` first skips the cells FILE already holds; then ``--datasets a,b`` and ``--threads N``
narrow the grid and set torch's threads, in that order, so that two processes can share the cores.)
"""
import json
import sys

STRATEGIES = ("partial:k=2", "full", "lp_ft")
FACTORS = (1 / 3, 1.0, 3.0)


def cell(dataset, shots, seed, name, prof):
    import torch

    import ftlib
    from ftlib import auto, hyper
    from ftlib.strategies import parse_strategy

    res, cap = prof.resolution[dataset], prof.max_test_per_class.get(dataset)
    ds = ftlib.load_dataset(dataset, shots=shots, seed=seed, resolution=res, max_test_per_class=cap)
    inner = auto.holdout_split(ds, seed)
    base = parse_strategy(name)
    bs = hyper.batch_size(len(inner.train))
    base_lr = base.learning_rate(bs)
    steps = hyper.train_steps(len(inner.train), prof.min_steps, batch=bs)
    cands = []
    for f in FACTORS:
        lr = round(base_lr * f, 8)
        s = parse_strategy(f"{name}:lr={lr}")
        row = auto._score(s, f"lr={lr}", inner, backbone=ftlib.backbones.DEFAULT_BACKBONE, seed=seed, steps=steps,
                          device=torch.device("cpu"), amp=True, progress=False)
        cands.append({**row, "factor": f, "lr": lr})
    # one-standard-error rule towards the default lr: keep it unless another beats it by more than one SE
    best = max(range(len(cands)), key=lambda i: cands[i]["held_out_acc"])
    default = FACTORS.index(1.0)
    chosen = default if cands[default]["held_out_acc"] >= cands[best]["held_out_acc"] - cands[best]["se"] else best
    common = dict(dataset=dataset, shots=shots, seed=seed, resolution=res, max_test_per_class=cap,
                  min_steps=prof.min_steps, profile="cpu")
    fixed = ftlib.run(ftlib.RunConfig(strategy=base, **common), progress=False)
    if chosen == default:
        tuned = fixed
    else:
        # the same lr at the full set's batch: the linear scaling rule from the inner batch
        full_bs = hyper.batch_size(len(ds.train))
        lr = round(cands[chosen]["lr"] * full_bs / bs, 8)
        tuned = ftlib.run(ftlib.RunConfig(strategy=f"{name}:lr={lr}", **common),
                          progress=False)
    return {"dataset": dataset, "shots": shots, "seed": seed, "strategy": name,
            "candidates": [{k: c[k] for k in ("factor", "lr", "held_out_acc", "se", "status")} for c in cands],
            "chosen_factor": FACTORS[chosen], "fixed_test_acc": fixed["test_acc"], "tuned_test_acc": tuned["test_acc"],
            "held_out_images": len(inner.test)}


def summarise(path) -> None:
    """Per dataset x shots: each strategy's mean test accuracy with the fixed and the selected lr (± SE over
    seeds), how often a non-default lr was chosen, and every pair of strategies whose order differs between the
    two protocols, with the tuned gap and its SE (a rank change counts when that gap is beyond 2 SE)."""
    import itertools

    import numpy as np

    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    cells = {}
    for r in rows:
        cells.setdefault((r["dataset"], r["shots"]), {}).setdefault(r["strategy"], []).append(r)
    changes = 0
    for (d, k), by in cells.items():
        print(f"\n{d}, {k} shots")
        mean = {}
        for s, rs in by.items():
            fixed = np.array([r["fixed_test_acc"] for r in rs])
            tuned = np.array([r["tuned_test_acc"] for r in rs])
            moved = sum(r["chosen_factor"] != 1.0 for r in rs)
            se = lambda a: a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")  # noqa: E731
            mean[s] = (fixed, tuned)
            print(f"  {s:12s} fixed {fixed.mean():.3f} ± {se(fixed):.3f}  selected {tuned.mean():.3f} ± "
                  f"{se(tuned):.3f}  (non-default lr chosen in {moved} of {len(rs)} seeds)")
        for a, b in itertools.combinations(mean, 2):
            fa, ta = mean[a]
            fb, tb = mean[b]
            if np.sign(fa.mean() - fb.mean()) != np.sign(ta.mean() - tb.mean()):
                gap = ta.mean() - tb.mean()
                se = np.sqrt(ta.var(ddof=1) / len(ta) + tb.var(ddof=1) / len(tb))
                beyond = abs(gap) > 2 * se
                changes += beyond
                print(f"  order of {a} and {b} flips: selected gap {gap:+.3f} ± {se:.3f}"
                      + (" (beyond 2 SE)" if beyond else " (within 2 SE)"))
    print(f"\nrank changes beyond 2 SE: {changes}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        summarise(sys.argv[2])
        sys.exit(0)
    # resumable: cells already in the output file (--resume FILE) are skipped
    args = sys.argv[1:]
    done = set()
    if args[:1] == ["--resume"]:
        with open(args[1]) as f:
            done = {(r["dataset"], r["shots"], r["seed"], r["strategy"]) for r in map(json.loads, f) if r}
        args = args[2:]
    datasets = None
    if args[:1] == ["--datasets"]:
        datasets, args = args[1].split(","), args[2:]
    if args[:1] == ["--threads"]:
        import torch

        torch.set_num_threads(int(args[1]))
        args = args[2:]
    from ftlib.profiles import get_profile

    prof = get_profile("cpu")
    sizes = [int(a) for a in args] or [5, 20]
    for dataset in datasets or prof.datasets:
        for shots in sizes:
            for seed in prof.seeds:
                for name in STRATEGIES:
                    if (dataset, shots, seed, name) not in done:
                        print(json.dumps(cell(dataset, shots, seed, name, prof)), flush=True)
