"""The one training loop: ``fit`` (every strategy goes through it) and ``evaluate``.

Batches are slices of the cached uint8 tensors, augmented on tensors, in channels-last
memory format; autocast (bf16, else fp16) on CUDA. Without a val split the schedule is fixed
and the last epoch is kept; with one, the epoch with the best val accuracy. A non-finite loss
stops the run with status "diverged" instead of raising.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():  # without ipywidgets tqdm.auto falls back to text bars, with a warning
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

from . import hyper
from .fuse import folded_view
from .transforms import prepare

BN_TYPES = (nn.modules.batchnorm._BatchNorm,)
log = logging.getLogger("ftlib")


@dataclass
class History:
    """What ``fit`` measured: per-epoch curves, the selected epoch and the cost."""

    train_loss: list = field(default_factory=list)  # mean cross-entropy per epoch (a penalty is not included)
    val_acc: list = field(default_factory=list)
    steps: int = 0  # optimiser steps taken
    best_epoch: int = -1  # the epoch kept: best on val, or the last one without a val split
    best_val: float = float("nan")
    status: str = "ok"
    planned_steps: int = 0  # the schedule's steps before any time budget
    time_capped: bool = False  # the time budget shortened the schedule: the model is under-trained
    train_seconds: float = 0.0


def frozen_batchnorms(model: nn.Module) -> list:
    """BatchNorm modules none of whose parameters train: they must stay in eval mode."""
    return [m for m in model.modules() if isinstance(m, BN_TYPES)
            and not any(p.requires_grad for p in m.parameters(recurse=False))]


def set_train_mode(model: nn.Module, frozen_bn: list, bn: str = "frozen") -> None:
    """``model.train()``, then put the BatchNorm of frozen blocks back in eval mode.

    ``model.train()`` turns running-statistics updates back on even where
    ``requires_grad=False`` (pytorch/pytorch#86590); ``bn="train"`` keeps that common
    mistake on purpose, to show its effect; ``bn="eval"`` keeps every BatchNorm in eval mode, so
    training-mode features equal the eval-mode ones a linear probe was fit on (LP-FT).
    """
    model.train()
    if bn == "frozen":
        for m in frozen_bn:
            m.eval()
    elif bn == "eval":  # every BatchNorm normalises with its running statistics and never updates them
        for m in model.modules():
            if isinstance(m, BN_TYPES):
                m.eval()


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def autocast(device: torch.device, amp: bool):
    """bf16 (or fp16) autocast on CUDA when ``amp``; a no-op context on CPU."""
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


# 32, not more: on 2 cores lite0 inference at 160 px runs 55 images/s at batch 32 and 43 at batch 128
# (activations of a big batch fall out of cache); a GPU gets its throughput from far bigger batches
EVAL_BATCH = 32


def predict_logits(model: nn.Module, split, mean, std, batch_size: int | None = None, amp: bool = True,
                   channels_last: bool = True) -> torch.Tensor:
    """Logits for every image of ``split``: eval mode, inference mode, BatchNorm folded into the convs
    (``ftlib.fuse``, on a copy: ``model`` is untouched), batched cached tensors."""
    if len(split) == 0:
        return torch.zeros(0)
    dev = device_of(model)
    batch_size = batch_size or (EVAL_BATCH if dev.type == "cpu" else 256)
    fast = folded_view(model, split.resolution)
    if channels_last:
        fast.to(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for i in range(0, len(split), batch_size):
            x = prepare(split.images[i: i + batch_size], split.resolution, mean, std, device=dev,
                        channels_last=channels_last)
            with autocast(dev, amp):
                out.append(fast(x).float().cpu())
    return torch.cat(out)


def evaluate(model: nn.Module, split, mean, std, batch_size: int | None = None, amp: bool = True) -> float:
    """Top-1 accuracy on ``split``.

    Example:
        >>> acc = evaluate(bb.model, ds.test, bb.mean, bb.std)  # doctest: +SKIP
    """
    if len(split) == 0:
        return float("nan")
    logits = predict_logits(model, split, mean, std, batch_size, amp)
    return (logits.argmax(1) == split.labels).float().mean().item()


def warmup_cosine(total_steps: int, warmup: int):
    """lr multiplier per step: linear warm-up to 1 over ``warmup`` steps, then cosine to 0."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def make_optimizer(groups: list, optimizer: str = "sgd", momentum: float = 0.9):
    """SGD with Nesterov momentum (Kornblith et al. 2019), or AdamW; groups carry lr and weight decay."""
    if optimizer == "adamw":
        return torch.optim.AdamW(groups)
    return torch.optim.SGD(groups, momentum=momentum, nesterov=True)


class PeakMemory:
    """Peak extra memory during training: CUDA allocator peak, or resident-set samples on CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    @staticmethod
    def release_free_heap() -> None:
        """Hand memory that earlier runs freed back to the OS (glibc ``malloc_trim``).

        ``./run`` keeps freed memory in the heap for speed (MALLOC_MMAP_MAX_=0); without this a
        run would reuse it and its resident-set growth would read ~0 MB.
        """
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to trim
            pass

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.release_free_heap()
            self.base = self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())

    @property
    def mb(self) -> float:
        return max(0, self.peak - self.base) / 2**20


def flush_denormal_enabled() -> bool:
    """Whether this thread's CPU flushes denormal floats to zero (torch has a setter, no getter)."""
    return bool((torch.tensor([1e-39]) * 1.0).item() == 0.0)


@contextlib.contextmanager
def process_flags(flush_denormal: bool, cudnn_benchmark: bool):
    """Set torch's flush-denormal mode and ``cudnn.benchmark`` for a block, and put back what was there.

    Example:
        >>> with process_flags(flush_denormal=True, cudnn_benchmark=False):
        ...     pass  # doctest: +SKIP
    """
    before = flush_denormal_enabled(), torch.backends.cudnn.benchmark
    torch.set_flush_denormal(flush_denormal)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        torch.set_flush_denormal(before[0])
        torch.backends.cudnn.benchmark = before[1]


def fit(model: nn.Module, train, val, *, mean, std, groups: list, epochs: int, batch_size: int, seed: int,
        penalty=None, bn: str = "frozen", optimizer: str = "sgd", amp: bool = True, channels_last: bool = True,
        progress: bool = True, desc: str = "fit", min_epoch_images: int = hyper.MIN_EPOCH_IMAGES,
        flush_denormal: bool = True, max_seconds: float | None = None, augment: bool = True) -> History:
    """Train ``model`` on ``train`` for ``epochs``; with a ``val`` split, keep the epoch with the best val accuracy.

    Without ``val`` (None or empty: the benchmark's protocol, which reads no labels beyond the k
    shots) the schedule is fixed and the last epoch's weights are kept, as in BiT.

    Args:
        groups: optimiser parameter groups (``{"params", "lr", "weight_decay"}``); parameters
            outside every group must already have ``requires_grad=False``.
        penalty: optional callable added to the loss (e.g. ``ftlib.penalties.L2SPPenalty``).
        bn: ``"frozen"`` keeps BatchNorm of frozen blocks in eval mode; ``"train"`` does not.
        min_epoch_images: an epoch shows at least this many images (several shuffled passes
            over a tiny train set), so 10-shot runs get enough optimiser steps between
            val evaluations: 20 images x 8 epochs would be only 8 steps.
        max_seconds: time budget. After the first epoch ``fit`` projects the schedule's time from the
            measured epoch; if it exceeds the budget the schedule is shortened to the epochs that fit
            (warm-up and cosine decay recomputed for the new length), ``History.time_capped`` is set and
            a warning is logged: the model is under-trained and must not be reported as a result.
        augment: random-resized crop and horizontal flip of every training batch (``ftlib.transforms``);
            False trains on the stored images as they are.
        flush_denormal: flush denormal floats to zero while ``fit`` runs. L2-SP's (w - w0)^2 and
            small momentum buffers produce denormals, which x86 CPUs process ~100x slower (measured:
            640 s vs 78 s for l2sp vs full without it). Like ``cudnn.benchmark``, which ``fit`` turns on
            for CUDA models (fixed shapes: cuDNN times its algorithms once and keeps the fastest), it
            is process-wide state: ``fit`` sets both on entry and restores the caller's values on exit.

    Example:
        >>> hist = fit(bb.model, ds.train, ds.val, mean=bb.mean, std=bb.std, groups=groups,
        ...            epochs=3, batch_size=32, seed=0)  # doctest: +SKIP
    """
    dev = device_of(model)
    with process_flags(flush_denormal=flush_denormal, cudnn_benchmark=dev.type == "cuda"):
        return _fit(model, train, val, dev, mean=mean, std=std, groups=groups, epochs=epochs, batch_size=batch_size,
                    seed=seed, penalty=penalty, bn=bn, optimizer=optimizer, amp=amp, channels_last=channels_last,
                    progress=progress, desc=desc, min_epoch_images=min_epoch_images, max_seconds=max_seconds,
                    augment=augment)


def _fit(model, train, val, dev, *, mean, std, groups, epochs, batch_size, seed, penalty, bn, optimizer, amp,
         channels_last, progress, desc, min_epoch_images, max_seconds, augment) -> History:
    """``fit``'s loop, run inside its process flags."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    n = len(train)
    bs = min(batch_size, n)
    passes, steps_per_epoch = hyper.epoch_shape(n, bs, min_epoch_images)
    total = steps_per_epoch * epochs
    opt = make_optimizer(groups, optimizer)
    shape = {"lr": warmup_cosine(total, hyper.warmup_steps(total))}  # replaced if a time budget shortens the run
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: shape["lr"](step))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dev.type == "cuda" and not torch.cuda.is_bf16_supported())
    frozen_bn = frozen_batchnorms(model)
    hist = History(planned_steps=total)
    best_state = None
    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, disable=not progress, unit="step", leave=True)
    # the run's one peak-memory meter is its caller's: ``ftlib.run`` wraps all of training in ``PeakMemory``
    epoch = -1
    while epoch + 1 < epochs:
        epoch += 1
        set_train_mode(model, frozen_bn, bn)
        order = torch.cat([torch.randperm(n, generator=gen) for _ in range(passes)])
        loss_sum = torch.zeros((), device=dev)
        for s in range(steps_per_epoch):
            idx = order[s * bs: (s + 1) * bs]
            x = prepare(train.images[idx], train.resolution, mean, std, generator=gen if augment else None, device=dev,
                        channels_last=channels_last)
            y = train.labels[idx].to(dev, non_blocking=True)
            with autocast(dev, amp):
                data_loss = F.cross_entropy(model(x), y)
            loss = data_loss + penalty() if penalty is not None else data_loss
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            hist.steps += 1
            loss_sum += data_loss.detach().float()
            bar.update(1)
        epoch_loss = (loss_sum / steps_per_epoch).item()  # one host sync per epoch, not per step
        if epoch == 0 and max_seconds is not None and epochs > 1:
            affordable = max(1, int(max_seconds // max(1e-9, time.perf_counter() - start)))
            if affordable < epochs:
                epochs, total = affordable, steps_per_epoch * affordable
                shape["lr"] = warmup_cosine(total, min(hyper.warmup_steps(total), steps_per_epoch))
                hist.time_capped = True
                bar.total = total
                bar.refresh()
                log.warning(f"{desc}: the time budget of {max_seconds:.0f} s allows {affordable} of "
                            f"{hist.planned_steps // steps_per_epoch} epochs ({total} of {hist.planned_steps} "
                            "steps); this run will be under-trained and is recorded as such")
        hist.train_loss.append(epoch_loss)
        if not math.isfinite(epoch_loss):
            hist.status = "diverged"
            break
        if val is None or len(val) == 0:  # fixed schedule: the last epoch is the model
            hist.best_epoch = epoch
            bar.set_postfix(loss=f"{epoch_loss:.3f}")
            continue
        acc = evaluate(model, val, mean, std, amp=amp)
        hist.val_acc.append(acc)
        if best_state is None or acc > hist.best_val:
            hist.best_val, hist.best_epoch = acc, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.set_postfix(loss=f"{epoch_loss:.3f}", val=f"{acc:.3f}")
    bar.close()
    hist.train_seconds = time.perf_counter() - start
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return hist
