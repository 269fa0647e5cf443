"""ftlib: fine-tune ImageNet-pretrained vision models, one protocol for every strategy.

Example:
    >>> import ftlib
    >>> cfg = ftlib.RunConfig("hymenoptera", strategy=ftlib.linear_probe(), shots=10)
    >>> record = ftlib.run(cfg)  # doctest: +SKIP
    >>> metrics = ftlib.train_model("imagefolder:photos", "auto", "models/photos")  # doctest: +SKIP
"""
import logging as _logging

from .backbones import DEFAULT_BACKBONE, Backbone, load_backbone
from .datasets import DATASETS, load_dataset
from .errors import FtlibError
from .penalties import L2SPPenalty
from .probe import extract_features, fit_probe
from .runs import RunConfig, __version__, run
from .strategies import (STRATEGIES, bitfit, full, l2sp, linear_probe, lp_ft, parse_strategy, partial, scratch,
                         surgical, trainable_parameters)
from .train import evaluate, fit
from .checkpoint import FineTuned, load_finetuned, predict, predict_files, save_finetuned
from .auto import choose_strategy
from .final import train_model
from .bench import grid, load_or_run, notebook_profile, notebook_store
from .profiles import PROFILES, get_profile
from . import diagnostics, literature, plots, report

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    # one run: config in, record out
    "RunConfig", "run", "__version__",
    # a final model: train (or let ftlib choose), save, reload, predict
    "train_model", "choose_strategy", "save_finetuned", "load_finetuned", "predict", "predict_files", "FineTuned",
    # strategies
    "STRATEGIES", "parse_strategy", "linear_probe", "partial", "full", "l2sp", "lp_ft", "scratch", "bitfit",
    "surgical", "trainable_parameters",
    # data and models
    "DATASETS", "load_dataset", "DEFAULT_BACKBONE", "Backbone", "load_backbone",
    # the loop, the probe, the penalty
    "fit", "evaluate", "fit_probe", "extract_features", "L2SPPenalty",
    # benchmarks
    "grid", "load_or_run", "notebook_profile", "notebook_store", "PROFILES", "get_profile",
    # results: tables of runs, figures, tables of one model, the published effects
    "report", "plots", "diagnostics", "literature",
    # errors
    "FtlibError",
]
