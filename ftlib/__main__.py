"""Command line: ``ftlib train | predict | bench | compare`` (or ``python -m ftlib ...``). Bad input: one line, exit code 2.

The work is done in the library (``ftlib.final``, ``ftlib.checkpoint``, ``ftlib.bench``); this module
parses arguments, sets up logging (``--quiet`` shows warnings only) and turns errors into exit codes.

The speed benchmark is ``python -m benchmarks.speed`` (``./run speed``); the README and notebook
rewriters are ``tools/readme.py`` and ``tools/notebooks.py`` (``./run readme``, ``./run notebooks``).
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys

from .backbones import DEFAULT_BACKBONE
from .datasets import DATASETS
from .errors import FtlibError
from .hyper import PASSES
from .profiles import PROFILES, STRATEGY_GRID
from .strategies import usage as strategy_usage
from .version import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise FtlibError(message)


# what each list flag takes, for the message when it is given empty
_LIST_VALUES = {
    "--dataset": f"{', '.join(DATASETS)} or imagefolder:<path>",
    "--strategies": strategy_usage(),
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


def _datasets(text: str) -> list:
    """``--dataset``: a comma list, where a folder path keeps its own commas.

    ``imagefolder:/data/cats,dogs,hymenoptera`` is two datasets: a piece that is neither a dataset
    name nor ``imagefolder:...`` continues the folder path before it.
    """
    out = []
    for piece in text.split(","):
        item = piece.strip()
        if out and out[-1].startswith("imagefolder:") and item not in DATASETS and not item.startswith("imagefolder:"):
            out[-1] += "," + piece
        elif item:
            out.append(item)
    return out or _list(text, "--dataset")


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


def _positive_number(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{name} must be a number > 0, got {text!r}")
        return value
    return parse


def _fraction(text):
    from .splits import check_test_fraction

    try:
        return check_test_fraction(float(text))
    except (ValueError, FtlibError):
        raise argparse.ArgumentTypeError(f"--test-fraction must be a number from 0 (no test split: train on every "
                                         f"labelled image) up to but not including 1, got {text!r}") from None


class _HelpWithExamples(_Help, argparse.RawDescriptionHelpFormatter):
    """``_Help``, keeping the line breaks of the description and the examples."""


_BENCH_DESCRIPTION = """Run the benchmark: every strategy x dataset x shots x seed of a profile, each through the same training
loop, into a resumable results store (results.csv, runs.jsonl), then write summary.md and the plots.
A finished run is never recomputed: rerun the same command to resume after an interruption."""
_BENCH_EXAMPLES = """examples:
  ftlib bench                                          the cpu profile's grid -> data/results/cpu
  ftlib bench --profile smoke --out /tmp/smoke         plumbing check in about a minute
  ftlib bench --dataset imagefolder:photos --shots 10,all --strategies linear_probe,full,l2sp
  ftlib bench --executor ray --address auto            the same grid on a Ray cluster"""
_TRAIN_EXAMPLES = """examples:
  ftlib train imagefolder:photos --strategy auto --out models/photos
  ftlib train hymenoptera --strategy lp_ft --resolution 128 --out models/ants
  ftlib train imagefolder:photos --strategy full --test-fraction 0 --out models/final"""
_PREDICT_EXAMPLES = """examples:
  ftlib predict models/photos/model.pt new_photos/ --csv predictions.csv
  ftlib predict models/photos/model.pt a.jpg b.png --top-k 2

exit status: 0 every file was read, 1 some files were skipped (listed on stderr), 2 a bad model file or no images"""


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
    p = _Parser(prog="ftlib", description="ftlib: fine-tune ImageNet-pretrained models; train one, predict with "
                                          "it, or benchmark every strategy on one protocol.")
    p.add_argument("--version", action="version", version=f"ftlib {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _train_parser(sub)
    _predict_parser(sub)
    b = sub.add_parser("bench", help="run the benchmark grid into a resumable results store",
                       description=_BENCH_DESCRIPTION, epilog=_BENCH_EXAMPLES, formatter_class=_HelpWithExamples)
    b.add_argument("--profile", default="cpu", help=f"budget and default grid: {', '.join(PROFILES)}")
    b.add_argument("--dataset", default=None,
                   help=f"comma list: {', '.join(DATASETS)}, imagefolder:<path> (a path may hold commas) "
                        "(default: the profile's three datasets)")
    b.add_argument("--backbone", default=DEFAULT_BACKBONE, help="timm/<model> or torchvision/<model>")
    b.add_argument("--strategies", default=None,
                   help=f"comma list of {_LIST_VALUES['--strategies']} (default: the profile's; cpu: "
                        f"{','.join(STRATEGY_GRID)})")
    b.add_argument("--shots", default=None, help="comma list of ints or 'all' (default: the profile's per dataset)")
    b.add_argument("--seeds", default=None, help="comma list of integers >= 0 (default: the profile's)")
    b.add_argument("--resolution", default=None, type=_resolution,
                   help="image side in px, 16 to 1024 (default: the profile's per dataset)")
    b.add_argument("--passes", default=None, type=_positive_number("--passes"),
                   help=f"passes over the labelled images (default: the profile's schedule, {PASSES:g} passes "
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
    b.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")
    c = sub.add_parser("compare", help="main-grid test accuracy of two results stores, cell by cell, vs seed noise")
    c.add_argument("reference", help="results directory, e.g. results")
    c.add_argument("rerun", help="results directory, e.g. data/results/cpu")
    return p


def _train_parser(sub) -> None:
    from .auto import CANDIDATES
    from .final import DEVICES

    t = sub.add_parser("train", help="train one strategy (or let ftlib choose) and save the model with its metrics",
                       description="Train one strategy on a dataset with the profile's schedule and write into "
                                   "--out: model.pt, metrics.json (test accuracy, per-class precision/recall/F1, "
                                   "confusion matrix, the budget), confusion.png and curves.png.",
                       epilog=_TRAIN_EXAMPLES, formatter_class=_HelpWithExamples)
    t.add_argument("dataset", help=f"{', '.join(DATASETS)} or imagefolder:<path> (a folder of class sub-folders)")
    t.add_argument("--strategy", default="auto",
                   help=f"{_LIST_VALUES['--strategies']}, or auto: chosen among {', '.join(CANDIDATES)} on a "
                        "held-out part of the labelled training images, then trained on all of them")
    t.add_argument("--out", required=True, help="folder for the model, metrics.json and the PNGs")
    t.add_argument("--shots", default="all", help="labelled images per class to train on, or 'all'")
    t.add_argument("--test-fraction", default=None, type=_fraction,
                   help="share of each class held out as test (default: the dataset's own test split, else 0.2); "
                        "0 trains on every labelled image and reports no test score")
    t.add_argument("--resolution", default=None, type=_resolution,
                   help="image side in px, 16 to 1024 (default: the profile's for the dataset, else the "
                        "backbone's input size)")
    t.add_argument("--passes", default=None, type=_positive_number("--passes"),
                   help="passes over the labelled images (default: the profile's schedule)")
    t.add_argument("--seed", default=0, type=_at_least_zero("--seed"))
    t.add_argument("--device", default="auto", choices=DEVICES, help="auto: CUDA, else Apple MPS, else CPU")
    t.add_argument("--backbone", default=DEFAULT_BACKBONE, help="timm/<model> or torchvision/<model>")
    t.add_argument("--profile", default="cpu", help=f"whose schedule and resolution: {', '.join(PROFILES)}")
    t.add_argument("--quiet", action="store_true", help="no progress bars; warnings and errors only")


def _predict_parser(sub) -> None:
    r = sub.add_parser("predict", help="classify image files and folders with a saved model, as CSV",
                       description="Classify images with a model saved by 'ftlib train' (or ftlib.save_finetuned). "
                                   "Folders are searched recursively; one CSV row per image: path, class, "
                                   "probability, then the next best classes with --top-k.",
                       epilog=_PREDICT_EXAMPLES, formatter_class=_HelpWithExamples)
    r.add_argument("model", help="a model file, e.g. models/photos/model.pt")
    r.add_argument("inputs", nargs="+", help="image files and folders")
    r.add_argument("--csv", default=None, help="write the CSV here (default: standard output)")
    r.add_argument("--top-k", default=1, type=_positive("--top-k"), help="classes per image, best first")
    r.add_argument("--quiet", action="store_true", help="warnings and errors only")


def train_main(args) -> int:
    from .final import train_model

    train_model(args.dataset, args.strategy, args.out, backbone=args.backbone, shots=args.shots, seed=args.seed,
                resolution=args.resolution, test_fraction=args.test_fraction, passes=args.passes,
                profile=args.profile, device=args.device, progress=not args.quiet)
    return 0


def predict_main(args) -> int:
    from .checkpoint import load_finetuned, predict_files

    model = load_finetuned(args.model)
    rows, skipped = predict_files(model, args.inputs, top=args.top_k)
    if skipped:
        print(f"ftlib: skipped {len(skipped)} file(s) that could not be read:", file=sys.stderr)
        for path, why in skipped:
            print(f"  {path}: {why}", file=sys.stderr)
    if not rows:
        raise FtlibError(f"no images to classify in {', '.join(args.inputs)} (image files: "
                         f"{', '.join(sorted(_image_exts()))})")
    k = min(args.top_k, len(model.classes))
    header = ["path", "class", "probability"] + [f"{w}_{i}" for i in range(2, k + 1) for w in ("class", "probability")]
    out = open(args.csv, "w", newline="", encoding="utf-8") if args.csv else sys.stdout
    try:
        w = csv.writer(out)
        w.writerow(header)
        for r in rows:
            w.writerow([r["path"]] + [v for c, p in r["top"] for v in (c, f"{p:.6f}")])
    finally:
        if args.csv:
            out.close()
    if args.csv:
        logging.getLogger("ftlib").info("[ftlib] %d image(s) classified -> %s", len(rows), args.csv)
    return 1 if skipped else 0


def _image_exts():
    from .images import IMAGE_EXTS

    return IMAGE_EXTS


class _Below(logging.Filter):
    def __init__(self, level):
        super().__init__()
        self.level = level

    def filter(self, record):
        return record.levelno < self.level


def configure_logging(quiet: bool = False) -> None:
    """ftlib's messages on the console: information on stdout, warnings and errors on stderr."""
    logger = logging.getLogger("ftlib")
    for h in list(logger.handlers):
        if getattr(h, "_ftlib_cli", False):
            logger.removeHandler(h)
    out, err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    out.addFilter(_Below(logging.WARNING))
    err.setLevel(logging.WARNING)
    for h in (out, err):
        h.setFormatter(logging.Formatter("%(message)s"))
        h._ftlib_cli = True
        logger.addHandler(h)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def bench_main(args) -> int:
    from .bench import bench, default_out, grid, summarise
    from .executors import make_executor
    from .paths import data_root

    # a flag of the other executor, or --executor ray without Ray, is reported before any work
    executor = make_executor(args.executor, jobs=args.jobs, address=args.address, cpus_per_run=args.cpus_per_run,
                             gpus_per_run=args.gpus_per_run, max_retries=args.max_retries)
    data_root()  # an unusable cache location (FTLIB_DATA) is reported before anything else

    def given(value, parse):  # an empty value is an error, not "use the default"
        return None if value is None else parse(value)

    configs = grid(args.profile, datasets=given(args.dataset, _datasets), backbone=args.backbone,
                   strategies=given(args.strategies, _strategies),
                   shots=given(args.shots, _flag_list("--shots")),
                   seeds=given(args.seeds, _seeds), resolution=args.resolution, passes=args.passes)
    store = bench(configs, args.out or default_out(args.profile), progress=not args.quiet,
                  executor=executor)
    summarise(store)
    failed = store.failures()  # runs a cluster could not finish: exit 1, a rerun retries them
    return 1 if len(failed) and failed.run_id.isin({c.run_id() for c in configs}).any() else 0


def compare_main(args) -> int:
    from pathlib import Path

    from .bench import main_grid
    from .report import compare_stores, finished
    from .store import ResultStore

    frames = []
    for path in (args.reference, args.rerun):
        if not (Path(path) / "results.csv").exists():
            raise FtlibError(f"no results store at {path} (a directory with results.csv, written by "
                             "python -m ftlib bench)")
        frames.append(main_grid(ResultStore(path).frame()))
    if not all(len(finished(df)) for df in frames):
        raise FtlibError("both stores need finished main-grid runs (python -m ftlib bench --profile cpu)")
    t = compare_stores(*frames)
    print(t.round(3).to_string())
    for side in ("reference", "rerun"):
        counts = sorted({n for cell in t[f"threads_{side}"] for n in cell.split(",")})
        print(f"torch threads per run, {side}: {', '.join(counts)}")
    print(f"cells within 2 standard errors: {int(t.within_2se.sum())}/{len(t)}; "
          f"largest |diff| {t['diff'].abs().max():.3f}")
    return 0


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop), handled like Ctrl-C: finished runs are saved, say how to resume."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    import signal

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        configure_logging(getattr(args, "quiet", False))
        if args.command == "train":
            return train_main(args)
        if args.command == "predict":
            return predict_main(args)
        if args.command == "bench":
            return bench_main(args)
        if args.command == "compare":
            return compare_main(args)
        parser.print_help()
        return 2
    except FtlibError as e:
        print(f"ftlib: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder filled up or turned read-only mid-run: finished runs are already stored
        print(f"ftlib: error: {_os_problem(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("ftlib: interrupted; every finished run is saved, rerun the same command to resume", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) else 130


def _os_problem(e: OSError) -> str:
    """A failed write says which setting frees space; any other OS error (a read) names the path and the reason."""
    import errno

    where = e.filename or "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
        return (f"cannot write {where} ({e.strerror or e}); free some space or choose another folder: --out for "
                "results, FTLIB_DATA for the cache")
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot access {where} ({e.strerror or e}); check its permissions"
    return f"cannot read {where} ({e.strerror or e}); check that it exists (not a dangling or looping link)"


if __name__ == "__main__":
    sys.exit(main())
