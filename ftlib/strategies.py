"""Fine-tuning strategies as values: frozen dataclasses, and the ``plan`` that turns one into data for ``fit``.

A strategy owns every fact about itself, all visible here: which blocks train, its base
learning rate, which parameters form which optimiser groups (learning rate, weight decay),
which penalty is added to the loss, its BatchNorm and optimiser defaults, whether it starts
pretrained or is closed-form, and its place in tables. ``fit`` has no per-strategy code path,
and a new strategy is one dataclass registered in ``STRATEGIES``.

Example:
    >>> s = partial(k=2)
    >>> s.label, s.k, s.head_lr_mult
    ('partial(k=2)', 2, 10.0)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from . import hyper
from .errors import FtlibError, unknown
from .penalties import L2SPPenalty

BN_POLICIES = ("frozen", "train", "eval")
OPTIMIZERS = ("sgd", "adamw")
# Kornblith et al. (2019) pick the probe's L2 strength from 45 log-spaced values over 1e-6..1e5;
# on features scaled to unit mean norm the useful span of C = 1/lambda is narrower, and we
# search it with 11 points (the nearest-class-mean head, C = 0, is always a candidate too).
PROBE_C_GRID = tuple(float(c) for c in np.logspace(-1, 4, 11))


@dataclass(frozen=True)
class Strategy:
    """Fields shared by the gradient-trained strategies; ``lr=None`` means the hyper-rule default."""

    name: ClassVar[str] = "strategy"
    # Body learning rate for SGD (Nesterov, momentum 0.9) at batch 32 (``hyper.BATCH_REFERENCE``); the head gets
    # ``head_lr_mult`` times more. Every gradient-trained strategy must set it: no silent default. Li et al. (2018)
    # use 0.005-0.02 at batch 64 for ResNet-101. Chosen on val splits only, never test, the val runs kept out of
    # every benchmark store:
    # - hymenoptera val (lite0, full, 15 epochs, seed 0): lr 0.01 -> best val 0.95 (128 px) with val swinging
    #   down to 0.70; 0.003 -> 0.975 and 0.001 -> 1.00 (160 px), both stable.
    # - CIFAR-10 val, 2026-12-02 (lite0, full, 10 shots, seed 100 -- not a benchmark seed -- 20 extra val images
    #   per class, 96 px, 42 steps, last epoch): lr 0.001 -> val 0.365 (final loss 0.56 ln C, under-trained);
    #   0.003 -> 0.425 (0.27 ln C); 0.01 -> 0.375 (0.13 ln C: fits the shots, loses on val). So 0.003.
    #   Command: RunConfig("cifar10", strategy=f"full:lr={lr}", shots=10, seed=100, resolution=96,
    #   min_steps=40, max_steps=40, val_per_class=20) through ftlib.run, one per lr.
    # - CIFAR-10 val at 100 images per class (experiments/data-size-schedule/): lr 0.01 trains slower than 0.003.
    base_lr: ClassVar[float | None] = None
    order: ClassVar[int] = 99  # place in tables and legends: from least to most adapted weights
    usage: ClassVar[str] = ""  # its command-line parameters, e.g. "[:k=N]"
    lr: float | None = None
    head_lr_mult: float = 10.0  # the new head starts random: let it move faster than the pretrained body
    weight_decay: float = 1e-4  # on conv/linear weights only; never on BatchNorm or biases
    optimizer: str = "sgd"
    # "frozen": BatchNorm of frozen blocks stays in eval mode; "train": their statistics move with the batches
    # (a frequent accident with model.train(), and fastai's deliberate train_bn=True); "eval": every BatchNorm
    # uses and keeps its pretrained statistics (gamma/beta still train)
    bn: str = "frozen"

    pretrained: ClassVar[bool] = True
    closed_form: ClassVar[bool] = False
    init_head_from_probe: ClassVar[bool] = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.closed_form and cls.base_lr is None:
            raise TypeError(f"strategy {cls.name!r} ({cls.__name__}) trains by gradient but sets no base_lr: give it "
                            "one (a ClassVar[float], the body learning rate at batch 32), chosen on a val split")

    def learning_rate(self, batch: int) -> float | None:
        """The body learning rate at ``batch``: ``lr`` when given, else ``base_lr`` scaled by ``hyper.learning_rate``;
        None for a closed-form strategy (nothing is trained by gradient).

        >>> full().learning_rate(64), full(lr=0.05).learning_rate(64), linear_probe().learning_rate(64)
        (0.006, 0.05, None)
        """
        if self.closed_form:
            return None
        return self.lr or hyper.learning_rate(self.base_lr, batch, self.optimizer)

    def param_groups(self, bb, lr: float, penalty=None) -> list:
        """Optimiser groups: body / head x decayed / not; nothing the penalty covers is decayed."""
        covered = penalty.covered() if penalty is not None else set()
        groups = {}
        for name, p, block in trainable_parameters(bb, self):
            head = block == "head"
            decay = self.decays(name, p, block) and id(p) not in covered
            key = (head, decay)
            if key not in groups:
                groups[key] = {"params": [], "lr": lr * (self.head_lr_mult if head else 1.0),
                               "weight_decay": self.weight_decay if decay else 0.0,
                               "name": f"{'head' if head else 'body'}{'' if decay else '_no_decay'}"}
            groups[key]["params"].append(p)
        return list(groups.values())

    def __post_init__(self):
        if self.bn not in BN_POLICIES:
            raise unknown("BatchNorm policy", self.bn, BN_POLICIES)
        if self.optimizer not in OPTIMIZERS:
            raise unknown("optimizer", self.optimizer, OPTIMIZERS)
        if self.lr is not None:
            _check_number(self, "lr", "> 0", lambda v: v > 0, "e.g. lr=0.01; leave it out for the hyper-rule default")
        _check_number(self, "head_lr_mult", "> 0", lambda v: v > 0, "e.g. head_lr_mult=10")
        _check_number(self, "weight_decay", ">= 0", lambda v: v >= 0, "e.g. weight_decay=0.0001")

    @property
    def label(self) -> str:
        """Short, unique-per-grid label: the name plus the fields that differ from the defaults."""
        default = type(self)()
        diff = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name) or f.name in ("k",)]
        return f"{self.name}({', '.join(diff)})" if diff else self.name

    def hparams(self) -> dict:
        """The strategy's fields as flat ``hp_*`` columns for a results row."""
        return {f"hp_{f.name}": _flat(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def trainable_blocks(self, block_names: list) -> list:
        return list(block_names)

    def trains(self, param_name: str, block: str, block_names: list) -> bool:
        return block in self.trainable_blocks(block_names)

    def penalty(self, bb, trainable: list):
        return None

    def decays(self, param_name: str, param, block: str) -> bool:
        """Whether the optimiser applies weight decay to this parameter."""
        return param.ndim > 1  # explicit decision: no decay on BatchNorm gamma/beta and biases


def _check_k(strategy) -> None:
    if isinstance(strategy.k, bool) or not isinstance(strategy.k, int) or strategy.k < 0:
        raise FtlibError(f"{strategy.name}: k must be an integer >= 0 (number of blocks), got {strategy.k!r}")


def _check_number(strategy, field: str, rule: str, ok, example: str, value=None) -> None:
    """A finite real number obeying ``rule`` (``ok``), else an error naming the strategy and the field."""
    v = getattr(strategy, field) if value is None else value
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) \
            or not ok(v):
        raise FtlibError(f"{strategy.name}: {field} must be a number {rule}, got {v!r} ({example})")


def _flat(v):
    return repr(v) if isinstance(v, tuple) else v


@dataclass(frozen=True)
class LinearProbe(Strategy):
    """Frozen backbone, cached features, L2 logistic regression (L-BFGS), strength chosen on val."""

    name: ClassVar[str] = "linear_probe"
    closed_form: ClassVar[bool] = True
    order: ClassVar[int] = 1
    usage: ClassVar[str] = "[:c_grid=C1,C2,...]"
    c_grid: tuple = PROBE_C_GRID

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.c_grid, tuple) or not self.c_grid:
            raise FtlibError(f"{self.name}: c_grid must be a non-empty tuple of inverse regularisation "
                             f"strengths > 0, got {self.c_grid!r} (e.g. c_grid=0.1)")
        for c in self.c_grid:
            _check_number(self, "c_grid", "> 0 in every entry (C = 1/lambda)", lambda v: v > 0, "e.g. c_grid=0.1",
                          value=c)

    def trainable_blocks(self, block_names):
        return ["head"]


@dataclass(frozen=True)
class Partial(Strategy):
    """Train the last ``k`` blocks of ``bb.blocks`` and the head; ``k=0`` is the head alone by SGD."""

    name: ClassVar[str] = "partial"
    base_lr: ClassVar[float] = 0.003
    order: ClassVar[int] = 2
    usage: ClassVar[str] = "[:k=N]"
    k: int = 1

    def __post_init__(self):
        super().__post_init__()
        _check_k(self)

    def trainable_blocks(self, block_names):
        body = [b for b in block_names if b != "head"]
        return body[max(0, len(body) - self.k):] + ["head"]


@dataclass(frozen=True)
class Full(Strategy):
    """Everything trains; weight decay towards 0 is the paper's "L2" baseline."""

    name: ClassVar[str] = "full"
    base_lr: ClassVar[float] = 0.003
    order: ClassVar[int] = 5


@dataclass(frozen=True)
class L2SP(Strategy):
    """Full fine-tuning + alpha/2 ||w - w0||^2 (pretrained weights) + beta/2 ||w_head||^2 (Li et al. 2018).

    ``include_bn_bias=False`` follows the authors' code (conv/linear kernels only);
    True covers every pretrained parameter (TLlib's choice). The optimiser applies
    no weight decay at all: the penalty replaces it.
    """

    name: ClassVar[str] = "l2sp"
    base_lr: ClassVar[float] = 0.003
    order: ClassVar[int] = 3
    usage: ClassVar[str] = "[:alpha=A:beta=B]"
    alpha: float = 0.1
    beta: float = 0.01
    include_bn_bias: bool = False
    weight_decay: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.weight_decay != 0:
            raise FtlibError("l2sp replaces weight decay: weight_decay must be 0 (Li et al. 2018)")
        _check_number(self, "alpha", ">= 0", lambda v: v >= 0, "the pull towards the pretrained weights, e.g. 0.1")
        _check_number(self, "beta", ">= 0", lambda v: v >= 0, "the head's weight decay, e.g. 0.01")

    def penalty(self, bb, trainable):
        return L2SPPenalty.for_backbone(bb, self.alpha, self.beta, self.include_bn_bias)

    def decays(self, param_name, param, block):
        return False


@dataclass(frozen=True)
class LPFT(Strategy):
    """LP-FT (Kumar et al. 2022): head from the linear probe, then full fine-tuning at a lower lr."""

    name: ClassVar[str] = "lp_ft"
    base_lr: ClassVar[float] = 0.001  # Kumar et al. (2022): LP-FT fine-tunes from a good head at a smaller lr
    order: ClassVar[int] = 4
    init_head_from_probe: ClassVar[bool] = True
    head_lr_mult: float = 1.0  # the head is already trained: no faster head
    # The probe is fit on eval-mode features (pretrained BatchNorm statistics). With BatchNorm in train mode
    # the same images give other features, the probe's head is wrong from step 1 (Fashion-MNIST 10-shot,
    # seeds 0-2: first-epoch loss 4.8, 15.6, 2.3 where full's random head starts at 2.2) and LP-FT ends at
    # 0.43, far below the probe's 0.71.
    # Keeping every BatchNorm in eval mode starts fine-tuning exactly at the probe: 0.73 (3 seeds, cpu profile).
    bn: str = "eval"


@dataclass(frozen=True)
class Scratch(Strategy):
    """The same architecture from random weights, same budget: what pretraining buys."""

    name: ClassVar[str] = "scratch"
    base_lr: ClassVar[float] = 0.03  # random weights need a larger step (no pretrained features to protect)
    order: ClassVar[int] = 0
    pretrained: ClassVar[bool] = False
    head_lr_mult: float = 1.0


@dataclass(frozen=True)
class BitFit(Strategy):
    """Biases (and BatchNorm shifts) plus the head (Ben Zaken et al. 2022), everything else frozen."""

    name: ClassVar[str] = "bitfit"
    base_lr: ClassVar[float] = 0.003
    order: ClassVar[int] = 6

    def trains(self, param_name, block, block_names):
        return block == "head" or param_name.endswith("bias")  # BatchNorm beta is a bias too


@dataclass(frozen=True)
class Surgical(Strategy):
    """The first ``k`` blocks plus the head (Lee et al. 2023: early blocks for input-level shifts)."""

    name: ClassVar[str] = "surgical"
    base_lr: ClassVar[float] = 0.003
    order: ClassVar[int] = 7
    usage: ClassVar[str] = "[:k=N]"
    k: int = 1

    def __post_init__(self):
        super().__post_init__()
        _check_k(self)

    def trainable_blocks(self, block_names):
        return list(block_names[: self.k]) + ["head"]


STRATEGIES = {c.name: c for c in (LinearProbe, Partial, Full, L2SP, LPFT, Scratch, BitFit, Surgical)}


def usage() -> str:
    """Every strategy with its command-line parameters, for help and error messages.

    >>> usage().split(", ")[:2]
    ['linear_probe[:c_grid=C1,C2,...]', 'partial[:k=N]']
    """
    return ", ".join(f"{name}{cls.usage}" for name, cls in STRATEGIES.items())


def pretrained_names() -> tuple:
    """Names of the strategies that start from pretrained weights (the probe included).

    >>> pretrained_names()[:3]
    ('linear_probe', 'partial', 'full')
    """
    return tuple(name for name, cls in STRATEGIES.items() if cls.pretrained)


def order_of(name: str) -> int:
    """A strategy's place in tables and legends (unknown names last)."""
    return STRATEGIES[name].order if name in STRATEGIES else len(STRATEGIES) + 99
linear_probe, partial, full, l2sp, lp_ft, scratch, bitfit, surgical = (
    LinearProbe, Partial, Full, L2SP, LPFT, Scratch, BitFit, Surgical)


def parse_strategy(text: str) -> Strategy:
    """``"partial"``, ``"partial:k=2"``, ``"l2sp:alpha=0.01:beta=0.01"`` -> a strategy value."""
    name, *pairs = str(text).strip().split(":")
    if name not in STRATEGIES:
        raise unknown("strategy", name, STRATEGIES)
    cls = STRATEGIES[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields:
            raise unknown(f"parameter of {name}", key, fields)
        kwargs[key] = _parse_value(value, type(getattr(cls(), key)), f"{name}:{key}")
    return cls(**kwargs)


def _parse_value(value: str, typ, where: str):
    try:
        if typ is bool:
            return {"true": True, "false": False}[value.lower()]
        if typ is tuple:
            return tuple(float(v) for v in value.split(","))
        return value if typ is str else (typ if typ is not type(None) else float)(value)
    except (KeyError, ValueError):
        raise FtlibError(f"bad value {value!r} for {where}") from None


def trainable_parameters(bb, strategy: Strategy) -> list:
    """``(name, param, block)`` for every parameter ``strategy`` trains on ``bb``, in model order."""
    names = [b for b, _ in bb.blocks]
    block_of = bb.block_of()
    return [(n, p, block_of[n]) for n, p in bb.model.named_parameters() if strategy.trains(n, block_of[n], names)]
