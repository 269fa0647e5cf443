"""One run = one config in, one record out: data, backbone, strategy, ``fit``, test once, costs."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import platform
import random
import socket
import time
from dataclasses import dataclass

import numpy as np
import timm
import torch

from . import hyper
from .backbones import DEFAULT_BACKBONE, load_backbone
from .datasets import DATASETS, DEFAULT_RESOLUTION, check_resolution, load_dataset
from .errors import FtlibError, unknown
from .splits import parse_shots
from .probe import extract_features, fit_probe
from .sources import folder_identity
from .strategies import PROBE_C_GRID, Full, Strategy, parse_strategy, trainable_parameters
from .train import PeakMemory, device_of, evaluate, fit
from .version import __version__


# fields added after stores were written: in a run's key only when they differ from these defaults
_KEY_UNLESS = {"test_fraction": None, "augment": True}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; its hash is the run's id in a results store.

    ``epochs``, ``batch_size`` and the strategy's ``lr`` left as None are filled by
    ``ftlib.hyper`` from the data size: a schedule of ``hyper.train_steps(n_train, min_steps, passes)``
    optimiser steps (``passes`` passes over the labelled set, at least ``min_steps``; ``max_steps``
    caps it only when given), with no epoch selection unless ``val_per_class`` > 0. ``max_seconds``
    is a time budget: a run that would exceed it is shortened to fit and recorded as under-trained
    (``time_capped``), never shown as a result.

    Example:
        >>> RunConfig("hymenoptera", strategy=Full(), shots=10, seed=1).run_id()[:8]  # doctest: +SKIP
    """

    dataset: str = "hymenoptera"
    backbone: str = DEFAULT_BACKBONE
    strategy: Strategy = Full()
    shots: object = "all"
    seed: int = 0
    resolution: int = DEFAULT_RESOLUTION
    epochs: int | None = None
    batch_size: int | None = None
    max_test_per_class: int | None = None
    min_steps: int = hyper.MIN_STEPS  # schedule: `passes` passes over the labelled set, at least min_steps
    max_steps: int | None = None  # an explicit step cap (None: none)
    val_per_class: int = 0  # labelled val images per class beyond the k shots (0: the k-shot budget is all)
    test_fraction: float | None = None  # None: the dataset's test split; F: a fixed F of each class; 0: no test
    amp: bool = True
    profile: str = "custom"
    passes: float = hyper.PASSES
    max_seconds: float | None = None  # time budget for training; None: no budget
    augment: bool = True  # random-resized crop + flip of every training batch (False: the images as stored)

    def __post_init__(self):
        """Every field checked once, here: a config that exists is a config that can run."""
        if isinstance(self.strategy, str):
            object.__setattr__(self, "strategy", parse_strategy(self.strategy))
        if not isinstance(self.strategy, Strategy):
            raise FtlibError(f"strategy must be a strategy value or its name, got {self.strategy!r}")
        if self.dataset not in DATASETS and not str(self.dataset).startswith("imagefolder:"):
            raise unknown("dataset", self.dataset, [*DATASETS, "imagefolder:<path>"])
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise FtlibError(f"seeds must be integers >= 0, got {self.seed!r}")
        object.__setattr__(self, "shots", parse_shots(self.shots))
        check_resolution(self.resolution)
        for name, value, rule in (("passes", self.passes, "> 0 (passes over the labelled images)"),
                                  ("max_seconds", self.max_seconds, "> 0 (a time budget in seconds) or None"),
                                  ("min_steps", self.min_steps, ">= 1")):
            if value is None and name == "max_seconds":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < (1 if name == "min_steps" else 1e-12):
                raise FtlibError(f"{name} must be a number {rule}, got {value!r}")
        if not isinstance(self.augment, bool):
            raise FtlibError(f"augment must be True or False, got {self.augment!r}")
        # an imagefolder: run is keyed on the folder's absolute path and content, computed once here so that
        # the config carries it to any worker (built-in datasets: {}, their run ids are their names)
        object.__setattr__(self, "_folder", folder_identity(self.dataset))

    def folder(self) -> dict:
        """``{"folder": absolute path, "folder_fingerprint": ...}`` of an ``imagefolder:`` config, else ``{}``."""
        return dict(self._folder)

    def key(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("strategy", "profile")}
        d["strategy"] = self.strategy.name
        for name, default in _KEY_UNLESS.items():
            if d.get(name, default) is default:
                d.pop(name, None)
        d.update(self.strategy.hparams())
        d.update(self._folder)
        d["schedule"] = hyper.SCHEDULE  # the rules that fill what the config leaves open
        return d

    def run_id(self) -> str:
        return hashlib.sha1(json.dumps(self.key(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def block_distances(bb, start: dict) -> dict:
    """Relative weight distance ||w - w0|| / ||w0|| per block (stem -> head)."""
    out = {}
    for block, module in bb.blocks:
        num = den = 0.0
        for p in module.parameters():
            w0 = start[id(p)]
            num += float((p.detach().float() - w0).pow(2).sum())
            den += float(w0.pow(2).sum())
        out[block] = math.sqrt(num) / math.sqrt(den) if den > 0 else 0.0
    return out


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators: a run's result depends on its config only."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # the new head's initialisation is part of the run's seed


def prepare_run(config: RunConfig, device=None):
    """Load data and backbone for ``config`` (seeded), and resolve the hyper-rule defaults."""
    seed_everything(config.seed)
    ds = load_dataset(config.dataset, config.shots, config.seed, config.resolution, config.max_test_per_class,
                      val_per_class=config.val_per_class, test_fraction=config.test_fraction)
    bb = load_backbone(config.backbone, num_classes=len(ds.classes), pretrained=config.strategy.pretrained)
    bb.model.to(device or default_device())
    bs = config.batch_size or hyper.batch_size(len(ds.train))
    steps = hyper.train_steps(len(ds.train), config.min_steps, config.passes, batch=bs)
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    epochs = config.epochs or hyper.epochs_for(steps, len(ds.train), bs)
    lr = config.strategy.learning_rate(bs)
    return ds, bb, {"batch_size": bs, "epochs": epochs, "lr": lr}


def run(config: RunConfig, *, device=None, progress: bool = True, return_model: bool = False):
    """Run one config; return its record (and the backbone with the selected model if asked).

    Example:
        >>> rec = run(RunConfig("hymenoptera", strategy="linear_probe", shots=10))  # doctest: +SKIP
        >>> rec["test_acc"]  # doctest: +SKIP
    """
    s = config.strategy
    ds, bb, resolved = prepare_run(config, device)
    model = bb.model
    for p in model.parameters():
        p.requires_grad_(False)
    w0 = {id(p): p.detach().float().clone() for p in model.parameters()}  # pretrained body, fresh head
    start_time = time.perf_counter()
    with PeakMemory(device_of(model)) as meter:
        status, val_acc, curves, probe, trainable, budget = _train(config, ds, bb, resolved, progress)
    train_seconds = time.perf_counter() - start_time
    mem = meter.mb
    test_acc = _test_accuracy(config, ds, bb) if status == "ok" else float("nan")
    train_acc = _accuracy(config, ds.train, bb) if status == "ok" else float("nan")  # unaugmented images
    record = {
        "run_id": config.run_id(), "dataset": config.dataset, "backbone": config.backbone, "strategy": s.name,
        "strategy_label": s.label, "shots": config.shots, "seed": config.seed, "resolution": config.resolution,
        "epochs": 0 if s.closed_form else resolved["epochs"], "batch_size": resolved["batch_size"], **budget,
        "lr": None if s.closed_form else resolved["lr"], "profile": config.profile,
        "max_test_per_class": config.max_test_per_class, "augment": config.augment, **s.hparams(),
        "probe_C": probe["C"] if probe else None, "probe_selection": probe["selection"] if probe else None,
        "n_train": len(ds.train), "n_val": len(ds.val), "n_test": len(ds.test),
        "n_labelled": len(ds.train) + len(ds.val), "val_per_class": config.val_per_class,
        "num_classes": len(ds.classes), "data_source": ds.origin, **config.folder(),
        "status": status, "val_acc": val_acc, "test_acc": test_acc, "train_acc": train_acc,
        "max_seconds": config.max_seconds, "train_seconds": train_seconds,
        "trainable_params": sum(p.numel() for _, p, _ in trainable), "peak_mem_mb": mem,
        "ftlib_version": __version__, "torch_version": str(torch.__version__), "device": _device_name(model),
        "torch_threads": torch.get_num_threads(), "host": socket.gethostname(),
        "python_version": platform.python_version(), "timm_version": timm.__version__,
        "numpy_version": np.__version__,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "curves": curves, "block_distance": block_distances(bb, w0),
    }
    return (record, bb, ds) if return_model else record


def _test_accuracy(config: RunConfig, ds, bb) -> float:
    """Test accuracy, once. A probe's body is the pretrained one, so its cached test features serve every seed."""
    if len(ds.test) == 0:  # test_fraction=0: every labelled image trained the model
        return float("nan")
    return _accuracy(config, ds.test, bb)


def _accuracy(config: RunConfig, split, bb) -> float:
    """Accuracy on ``split`` (the test split once; the unaugmented training images for the budget).
    A probe's body is the pretrained one, so its cached features serve every seed."""
    if config.strategy.closed_form and bb.pretrained:
        with torch.no_grad():
            logits = bb.head(extract_features(bb, split).to(bb.head.weight.device))
        return (logits.argmax(1).cpu() == split.labels).float().mean().item()
    return evaluate(bb.model, split, bb.mean, bb.std, amp=config.amp)


def _train(config: RunConfig, ds, bb, resolved: dict, progress: bool):
    """Probe and/or fit as the strategy says.

    Returns status, the selection score (the probe's cross-validated accuracy, or the best val accuracy
    when a val split exists; NaN for a fixed schedule), curves, probe info, trainables and the budget
    columns (optimiser steps, final training loss, selected epoch).
    """
    s, model = config.strategy, bb.model
    probe = fit_probe(bb, ds, getattr(s, "c_grid", PROBE_C_GRID)) if s.closed_form or s.init_head_from_probe else None
    trainable = trainable_parameters(bb, s)
    for _, p, _ in trainable:
        p.requires_grad_(True)
    budget = {"steps": 0, "planned_steps": 0, "passes": 0.0, "final_train_loss": None, "selected_epoch": None,
              "time_capped": False}
    if s.closed_form:
        curves = {"train_loss": [], "val_acc": [], "probe_C": list(probe["path"].C),
                  "probe_score": list(probe["path"].score)}
        status, val_acc = "ok", probe["score"]
    else:
        penalty = s.penalty(bb, trainable)
        groups = s.param_groups(bb, resolved["lr"], penalty)
        hist = fit(model, ds.train, ds.val, mean=bb.mean, std=bb.std, groups=groups, epochs=resolved["epochs"],
                   batch_size=resolved["batch_size"], seed=config.seed, penalty=penalty, bn=s.bn,
                   optimizer=s.optimizer, amp=config.amp, progress=progress, max_seconds=config.max_seconds,
                   augment=config.augment,
                   desc=f"{config.dataset} {s.label} shots={config.shots} seed={config.seed}")
        curves = {"train_loss": hist.train_loss, "val_acc": hist.val_acc}
        status, val_acc = hist.status, hist.best_val
        budget = {"steps": hist.steps, "planned_steps": hist.planned_steps,
                  "passes": hyper.passes_of(hist.steps, resolved["batch_size"], len(ds.train)),
                  "final_train_loss": hist.train_loss[-1] if hist.train_loss else None,
                  "selected_epoch": hist.best_epoch + 1, "time_capped": hist.time_capped}
    return status, val_acc, curves, probe, trainable, budget


def _device_name(model) -> str:
    dev = next(model.parameters()).device
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}"
