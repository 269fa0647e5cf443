"""Command line: ``python -m ftlib bench | compare``. Bad input: one line, exit code 2.

The speed benchmark is ``python -m benchmarks.speed`` (``./run speed``); the README and notebook
rewriters are ``tools/readme.py`` and ``tools/notebooks.py`` (``./run readme``, ``./run notebooks``).
"""
from __future__ import annotations

import argparse
import sys

from .backbones import DEFAULT_BACKBONE
from .datasets import DATASETS
from .errors import FtlibError
from .hyper import PASSES
from .profiles import PROFILES, STRATEGY_GRID


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise FtlibError(message)


# what each list flag takes, for the message when it is given empty
_LIST_VALUES = {
    "--dataset": f"{', '.join(DATASETS)} or imagefolder:<path>",
    "--strategies": "linear_probe[:c_grid=C1,C2,...], partial[:k=N], full, l2sp[:alpha=A:beta=B], lp_ft, "
                    "scratch, bitfit, surgical[:k=N]",
    "--shots": "integers >= 1 or 'all', e.g. --shots 5,all",
    "--seeds": "integers >= 0, e.g. --seeds 0,1,2",
}


def _list(text: str, flag: str = "list") -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        valid = _LIST_VALUES.get(flag)
        raise FtlibError(f"{flag} is empty ({text!r}); give a comma list" + (f" of {valid}" if valid else "")
                         + "; or leave the flag out for the profile's default")
    return items


def _flag_list(flag: str):
    return lambda text: _list(text, flag)


def _strategies(text: str) -> list:
    """``--strategies``: a comma list, where a tuple value keeps its own commas.

    ``linear_probe:c_grid=0.1,1,10,full`` is two strategies: a bare number after a ``key=value``
    continues that value.
    """
    out = []
    for item in _list(text, "--strategies"):
        if out and "=" in out[-1] and _is_number(item):
            out[-1] += "," + item
        else:
            out.append(item)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _seeds(text: str) -> list:
    out = []
    for t in _list(text, "--seeds"):
        try:
            out.append(int(t))
        except ValueError:
            out.append(-1)
        if out[-1] < 0:
            raise FtlibError(f"--seeds must be integers >= 0, got {t!r} (e.g. --seeds 0,1,2)")
    return out


def _resolution(text: str) -> int:
    from .datasets import check_resolution

    try:
        value = int(text)
    except ValueError:
        value = text
    try:
        return check_resolution(value, "the image side")
    except FtlibError as e:  # argparse reports ArgumentTypeError's own words
        raise argparse.ArgumentTypeError(str(e)) from None


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once: not for ``None`` (the help says what it means) nor where the help has one."""

    def _get_help_string(self, action):
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _positive(name):
    def parse(text):
        if not text.strip().isdigit() or int(text) < 1:  # argparse reports ArgumentTypeError's own words
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {text!r}")
        return int(text)
    return parse


def _at_least_zero(name, kind=int):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a {'number' if kind is float else 'whole number'} "
                                             f">= 0, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ftlib", description="ftlib: fine-tuning strategies benchmarked on one protocol.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    b = sub.add_parser("bench", help="run the benchmark grid into a resumable results store",
                       formatter_class=_Help)
    b.add_argument("--profile", default="cpu", help=f"budget and default grid: {', '.join(PROFILES)}")
    b.add_argument("--dataset", default=None,
                   help=f"comma list: {', '.join(DATASETS)}, imagefolder:<path> (default: the "
                        "profile's three datasets)")
    b.add_argument("--backbone", default=DEFAULT_BACKBONE, help="timm/<model> or torchvision/<model>")
    b.add_argument("--strategies", default=None,
                   help=f"comma list of {_LIST_VALUES['--strategies']} (default: the profile's; cpu: "
                        f"{','.join(STRATEGY_GRID)})")
    b.add_argument("--shots", default=None, help="comma list of ints or 'all' (default: the profile's per dataset)")
    b.add_argument("--seeds", default=None, help="comma list of integers >= 0 (default: the profile's)")
    b.add_argument("--resolution", default=None, type=_resolution,
                   help="image side in px, 16 to 1024 (default: the profile's per dataset)")
    b.add_argument("--epochs", default=None, type=_positive("--epochs"),
                   help=f"fixed epochs (default: the profile's schedule, {PASSES:g} passes over the labelled images "
                        "within its step range)")
    b.add_argument("--out", default=None, help="results directory (default: data/results/<profile>)")
    b.add_argument("--jobs", default=1, type=_positive("--jobs"),
                   help="worker processes running runs side by side, torch's threads split between them "
                        "(docs/performance.md: 1.10x on 2 cores)")
    b.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="where runs execute: local (this process, or --jobs worker processes) or ray (a Ray "
                        "started here, or the cluster of --address; needs pip install 'ftlib[ray]')")
    b.add_argument("--address", default=None,
                   help="ray: join this cluster (host:port, 'auto', ray://host:10001; default: $RAY_ADDRESS, "
                        "else start Ray here)")
    b.add_argument("--cpus-per-run", default=None, type=_positive("--cpus-per-run"),
                   help="ray: CPUs each run reserves, also its torch thread count (default: 1)")
    b.add_argument("--gpus-per-run", default=None, type=_at_least_zero("--gpus-per-run", float),
                   help="ray: GPUs each run reserves, fractions share one; such runs train on CUDA, each in a "
                        "fresh worker process (default: 0)")
    b.add_argument("--max-retries", default=None, type=_at_least_zero("--max-retries"),
                   help="ray: reruns of a run whose worker died before it is stored as failed (default: 3)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    c = sub.add_parser("compare", help="main-grid test accuracy of two results stores, cell by cell, vs seed noise")
    c.add_argument("reference", help="results directory, e.g. results")
    c.add_argument("rerun", help="results directory, e.g. data/results/cpu")
    return p


def bench_main(args) -> int:
    from .bench import bench, default_out, grid, report
    from .executors import make_executor
    from .paths import data_root

    # a flag of the other executor, or --executor ray without Ray, is reported before any work
    executor = make_executor(args.executor, jobs=args.jobs, address=args.address, cpus_per_run=args.cpus_per_run,
                             gpus_per_run=args.gpus_per_run, max_retries=args.max_retries)
    data_root()  # an unusable cache location (FTLIB_DATA) is reported before anything else

    def given(value, parse):  # an empty value is an error, not "use the default"
        return None if value is None else parse(value)

    configs = grid(args.profile, datasets=given(args.dataset, _flag_list("--dataset")), backbone=args.backbone,
                   strategies=given(args.strategies, _strategies),
                   shots=given(args.shots, _flag_list("--shots")),
                   seeds=given(args.seeds, _seeds), resolution=args.resolution, epochs=args.epochs)
    store = bench(configs, args.out or default_out(args.profile), progress=not args.quiet,
                  executor=executor)
    report(store)
    failed = store.failures()  # runs a cluster could not finish: exit 1, a rerun retries them
    return 1 if len(failed) and failed.run_id.isin({c.run_id() for c in configs}).any() else 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "bench":
            return bench_main(args)
        if args.command == "compare":
            from .headline import compare_stores
            t = compare_stores(args.reference, args.rerun)
            print(t.round(3).to_string())
            for side in ("reference", "rerun"):
                counts = sorted({n for cell in t[f"threads_{side}"] for n in cell.split(",")})
                print(f"torch threads per run, {side}: {', '.join(counts)}")
            print(f"cells within 2 standard errors: {int(t.within_2se.sum())}/{len(t)}; "
                  f"largest |diff| {t['diff'].abs().max():.3f}")
            return 0
        parser.print_help()
        return 2
    except FtlibError as e:
        print(f"ftlib: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder filled up or turned read-only mid-run: finished runs are already stored
        print(f"ftlib: error: cannot write {e.filename or 'a file'} ({e.strerror or e}); free some space or "
              "choose another folder: --out for results, FTLIB_DATA for the cache", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftlib: interrupted; every finished run is saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
