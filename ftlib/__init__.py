"""ftlib: fine-tune ImageNet-pretrained vision models, one protocol for every strategy.

Example:
    >>> import ftlib
    >>> cfg = ftlib.RunConfig("hymenoptera", strategy=ftlib.linear_probe(), shots=10)
    >>> record = ftlib.run(cfg)  # doctest: +SKIP
"""
from .backbones import DEFAULT_BACKBONE, Backbone, load_backbone
from .datasets import DATASETS, load_dataset
from .errors import FtlibError
from .penalties import L2SPPenalty
from .probe import extract_features, fit_probe
from .runs import RunConfig, __version__, run
from .strategies import (STRATEGIES, bitfit, full, l2sp, linear_probe, lp_ft, parse_strategy, partial, scratch,
                         surgical, trainable_parameters)
from .train import evaluate, fit
from .checkpoint import FineTuned, load_finetuned, predict, save_finetuned
from .bench import grid, load_or_run, notebook_profile
from .profiles import PROFILES, get_profile
from . import plots, report
