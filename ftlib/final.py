"""Train one strategy on a dataset and keep the model: the model file, ``metrics.json`` and two PNGs.

``python -m ftlib train <dataset> --strategy <s> --out <dir>`` is ``train_model``; ``--strategy auto``
first chooses the strategy inside the labelled training images (``ftlib.auto``). Training goes
through ``ftlib.run`` like every benchmark run, with the profile's schedule.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import hyper
from .backbones import DEFAULT_BACKBONE, load_backbone
from .checkpoint import save_finetuned
from .datasets import load_dataset
from .errors import FtlibError
from .paths import writable_dir
from .profiles import get_profile
from .report import ln_c
from .runs import RunConfig, prepare_run, run
from .sources import check_outside
from .splits import check_test_fraction, parse_shots
from .strategies import parse_strategy, trainable_parameters
from .train import autocast, predict_logits
from .transforms import prepare
from .version import __version__

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
MODEL_FILE, METRICS_FILE, CONFUSION_FILE, CURVES_FILE = "model.pt", "metrics.json", "confusion.png", "curves.png"
TIMED_STEPS = 3  # forward/backward steps timed (after one warm-up) for the time estimate


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA, else Apple MPS, else CPU; a named device that is not there is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    there = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}
    if name not in DEVICES:
        raise FtlibError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if there["cuda"] else "mps" if there["mps"] else "cpu")
    if not there[name]:
        raise FtlibError(f"device {name!r} is not available to this torch ({torch.__version__}); available here: "
                         f"{', '.join(['auto'] + [d for d in DEVICES[1:] if there[d]])}")
    return torch.device(name)


def train_model(dataset: str, strategy="auto", out="model", *, backbone: str = DEFAULT_BACKBONE, shots="all",
                seed: int = 0, resolution: int | None = None, test_fraction: float | None = None,
                passes: float | None = None, profile: str = "cpu", device="auto", progress: bool = True) -> dict:
    """Train ``strategy`` on ``dataset`` and write ``out/model.pt``, ``metrics.json``, ``confusion.png``, ``curves.png``.

    Args:
        strategy: a strategy string (``"full"``, ``"partial:k=2"``, ...) or ``"auto"``: chosen among
            ``ftlib.auto.CANDIDATES`` inside the labelled training images, then trained on all of them.
        test_fraction: None keeps the dataset's own test split; F carves a fixed F of each class as test;
            0 trains on every labelled image (``metrics.json`` then says that no test score exists).
        passes: passes over the labelled images (None: the profile's schedule).
        profile: whose schedule (its step floor; no time budget: a final model trains to the end) and
            default resolution to use.

    Returns the metrics written to ``metrics.json``. Messages go to the ``ftlib`` logger
    (``logging.basicConfig(level=logging.INFO)`` shows them in a notebook).

    Example:
        >>> m = train_model("imagefolder:photos", "auto", "models/photos", resolution=128)  # doctest: +SKIP
        >>> m["test"]["accuracy"], m["strategy"]  # doctest: +SKIP
    """
    dev = resolve_device(device)
    shots, test_fraction = parse_shots(shots), check_test_fraction(test_fraction)
    prof = get_profile(profile)
    if passes is not None and not (isinstance(passes, (int, float)) and not isinstance(passes, bool) and passes > 0):
        raise FtlibError(f"passes must be a number > 0 (passes over the labelled images), got {passes!r}")
    res = resolution or prof.resolution.get(dataset) or load_backbone(backbone, pretrained=False).input_size
    check_outside(out, [dataset])  # a model folder inside the images would become a class on the next run
    out = writable_dir(out, "choose a writable folder with --out")
    fixed = None if strategy == "auto" else (parse_strategy(strategy) if isinstance(strategy, str) else strategy)

    def config(s):
        extra = {} if passes is None else {"passes": float(passes)}
        return RunConfig(dataset, backbone=backbone, strategy=s, shots=shots, seed=seed, resolution=res,
                         min_steps=prof.min_steps, test_fraction=test_fraction,
                         profile=prof.name, **extra)

    ds, bb, resolved = prepare_run(config(fixed or parse_strategy("full")), dev)
    steps = resolved["epochs"] * hyper.epoch_shape(len(ds.train), resolved["batch_size"])[1]
    log.info("[ftlib] %s: %d classes, %d labelled images for training, %s; %d px, %s on %s", dataset, len(ds.classes),
             len(ds.train), f"{len(ds.test)} test images" if len(ds.test) else "no test split (test fraction 0)",
             res, backbone, _device_label(dev))
    evidence = None
    if fixed is None:
        from .auto import choose_strategy

        evidence = choose_strategy(ds, backbone=backbone, seed=seed, final_steps=steps, device=dev,
                                   progress=progress)
        fixed = parse_strategy(evidence["winner"])
        del bb
        ds, bb, resolved = prepare_run(config(fixed), dev)
    cfg = config(fixed)
    estimate = estimate_seconds(cfg, ds, bb, resolved, dev)
    del bb
    log.info("[ftlib] training %s: %s; about %s (measured: %s)", fixed.label, _plan(fixed, ds, resolved),
             _duration(estimate["seconds"]), estimate["measured"])
    record, bb, ds = run(cfg, device=dev, progress=progress, return_model=True)
    if record["status"] != "ok":
        raise FtlibError(f"training {fixed.label} {record['status']} (final training loss "
                         f"{record['final_train_loss']}); no model written. Choose a smaller learning rate, "
                         f"e.g. --strategy {fixed.name}:lr={(record['lr'] or 0.01) / 10:g}")
    if evidence is not None:  # what choosing cost, against the winner's own training
        evidence = {**evidence, "refit_seconds": record["train_seconds"],
                    "cost_ratio": (evidence["selection_seconds"] + record["train_seconds"]) / record["train_seconds"]}
        log.info("[ftlib] auto: choosing took %.0f s, the refit %.0f s: %.1fx the refit alone",
                 evidence["selection_seconds"], record["train_seconds"], evidence["cost_ratio"])
    save_finetuned(out / MODEL_FILE, bb, ds.classes, ds.resolution, record)
    metrics = _metrics(record, bb, ds, resolved, estimate, evidence, test_fraction)
    _plots(metrics, record, out)
    _write_json(metrics, out / METRICS_FILE)
    log.info("[ftlib] %s: %s; wrote %s", fixed.label,
             f"test accuracy {metrics['test']['accuracy']:.3f} on {len(ds.test)} images" if metrics["test"]
             else "no test score (every labelled image trained the model)",
             ", ".join(str(out / f) for f in metrics["files"].values()))
    return metrics


def estimate_seconds(cfg: RunConfig, ds, bb, resolved: dict, device) -> dict:
    """Seconds a run of ``cfg`` will take, from timed forward/backward steps on its own model and batch."""
    s, model, n, bs = cfg.strategy, bb.model, len(ds.train), resolved["batch_size"]
    steps = 0 if s.closed_form else resolved["epochs"] * hyper.epoch_shape(n, bs)[1]
    x = prepare(ds.train.images[:bs], ds.resolution, bb.mean, bb.std, device=device)
    y = ds.train.labels[:bs].to(device)
    trainable = [p for _, p, _ in trainable_parameters(bb, s)] if not s.closed_form else []
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn, reps):
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - start) / reps

    def step():
        model.train()
        with autocast(device, cfg.amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def forward():
        model.eval()
        with torch.inference_mode(), autocast(device, cfg.amp):
            model(x)

    per_step = timed(step, TIMED_STEPS) if trainable else 0.0
    per_batch = timed(forward, 1)
    for p in trainable:
        p.requires_grad_(False)
    batches = math.ceil(n / bs) * (s.closed_form or s.init_head_from_probe) + math.ceil(len(ds.test) / bs)
    measured = (f"{per_step:.2f} s per training step, " if trainable else "") + \
        f"{per_batch:.2f} s per inference batch of {len(y)}"
    return {"seconds": steps * per_step + batches * per_batch, "seconds_per_step": per_step,
            "seconds_per_inference_batch": per_batch, "steps": steps, "measured": measured}


def _metrics(record, bb, ds, resolved, estimate, evidence, test_fraction) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    k = len(ds.classes)
    test = None
    if len(ds.test):
        pred = predict_logits(bb.model, ds.test, bb.mean, bb.std).argmax(1).numpy()
        true = ds.test.labels.numpy()
        p, r, f, support = precision_recall_fscore_support(true, pred, labels=list(range(k)), zero_division=0)
        cm = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        test = {"accuracy": float((pred == true).mean()), "images": int(len(true)),
                "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(support[i])} for i, c in enumerate(ds.classes)},
                "confusion_matrix": {"rows": "true class", "columns": "predicted class", "classes": list(ds.classes),
                                     "counts": cm.tolist()}}
    n, bs = len(ds.train), resolved["batch_size"]
    loss = record["final_train_loss"]
    return {
        "strategy": record["strategy_label"], "dataset": record["dataset"], "backbone": record["backbone"],
        "classes": list(ds.classes), "resolution": record["resolution"], "shots": record["shots"],
        "seed": record["seed"], "device": record["device"],
        "data": {"train_images": n, "test_images": len(ds.test), "train_per_class": ds.train.counts(),
                 "test_fraction": test_fraction, "source": record["data_source"]},
        "test": test,
        "test_note": None if test else "no test split: every labelled image trained the model, so no test score "
                                       "exists (--test-fraction 0)",
        "budget": {"steps": record["steps"], "passes": record["passes"],
                   "batch_size": bs, "lr": record["lr"], "final_train_loss": loss,
                   "final_train_loss_over_ln_c": loss / ln_c(k) if loss is not None else None,
                   "train_accuracy": record["train_acc"],
                   "train_seconds": record["train_seconds"], "estimated_seconds": estimate["seconds"],
                   "peak_mem_mb": record["peak_mem_mb"], "trainable_params": record["trainable_params"]},
        "versions": {"ftlib": __version__, "torch": str(torch.__version__), "timm": record["timm_version"],
                     "numpy": record["numpy_version"], "python": platform.python_version()},
        "auto": evidence,
        "files": {"model": MODEL_FILE, "metrics": METRICS_FILE, "curves": CURVES_FILE,
                  **({"confusion": CONFUSION_FILE} if test else {})},
        "timestamp": record["timestamp"],
    }


def _plots(metrics: dict, record: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import pandas as pd

    from .plots import plot_confusion

    if metrics["test"]:
        cm = metrics["test"]["confusion_matrix"]
        ax = plot_confusion(pd.DataFrame(cm["counts"], index=pd.Index(cm["classes"], name="true"),
                                         columns=pd.Index(cm["classes"], name="predicted")))
        ax.set_title(f"{metrics['strategy']}: test accuracy {metrics['test']['accuracy']:.3f}")
        ax.figure.savefig(out / CONFUSION_FILE, dpi=110)
        plt.close(ax.figure)
    curves = record.get("curves") or {}
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    if curves.get("train_loss"):
        loss = curves["train_loss"]
        per_epoch = metrics["budget"]["passes"] / len(loss)
        ax.plot([per_epoch * (i + 1) for i in range(len(loss))], loss, marker="o")
        ax.axhline(ln_c(len(metrics["classes"])), color="grey", ls=":", label="chance (ln C)")
        ax.set(xlabel="passes over the labelled images", ylabel="training loss (cross-entropy)",
               title=f"{metrics['strategy']}: {metrics['budget']['steps']} steps")
        ax.legend()
    elif curves.get("probe_C"):
        c, score = np.asarray(curves["probe_C"], float), curves["probe_score"]
        ax.plot(np.where(c > 0, c, np.nan), score, marker="o")
        ax.set(xscale="log", xlabel="C (inverse L2 strength)", ylabel="cross-validated accuracy",
               title=f"{metrics['strategy']}: choosing the probe's regularisation")
    fig.savefig(out / CURVES_FILE, dpi=110)
    plt.close(fig)


def _write_json(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_plain(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _plain(v):
    """JSON-ready: NaN and inf become null (a diverged candidate has no score), numpy scalars Python ones."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


def _plan(s, ds, resolved) -> str:
    n, bs = len(ds.train), resolved["batch_size"]
    if s.closed_form:
        return f"features of {n} images, then a logistic-regression head chosen by cross-validation"
    steps = resolved["epochs"] * hyper.epoch_shape(n, bs)[1]
    return (f"{steps} optimiser steps of batch {bs} ({steps * min(bs, n) / n:.1f} passes over {n} images), "
            f"lr {resolved['lr']:g}" + (", head from a linear probe first" if s.init_head_from_probe else ""))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _device_label(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{dev.type} ({torch.get_num_threads()} threads)"


__all__ = ["train_model", "resolve_device", "estimate_seconds", "DEVICES"]
