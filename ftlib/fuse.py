"""BatchNorm folded into the convolution before it, for inference: same outputs, fewer passes over memory.

In eval mode a BatchNorm is a per-channel affine map, so ``bn(conv(x))`` equals a conv with
scaled weights and a new bias. On 2 cores this took lite0 inference at 160 px, batch 32,
channels-last, from 55 to 71 images/s (measured 2026-11-26 on a 2-core AMD EPYC, torch 2.14.1; one
forward loop timed alone; the whole ``evaluate`` against the tutorial's loop is the
``eval_vs_naive`` item of ``python -m benchmarks.speed``). Pairs are found by running the model once on
one image and keeping the BatchNorms whose input *is* the output of the conv called just before;
anything else is left as it was.

``folded_view`` keeps one folded copy per model and refreshes it from the model's weights, which is
what ``evaluate`` uses once per epoch inside ``fit``. (Running each folded conv and its ReLU6 as one
oneDNN call was measured and left out: 1.11x on ``evaluate`` alone, a fraction of a percent of a run;
experiments/convact-eval-speed/.)

Example:
    >>> fast = fold_batchnorm(bb.model)  # doctest: +SKIP
    >>> fast(x)  # same logits as bb.model.eval()(x), up to float rounding  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import weakref

import torch
from torch import nn


def conv_bn_pairs(model: nn.Module, sample: torch.Tensor) -> list:
    """``(parent, bn_name, conv, bn)`` for every BatchNorm fed directly by a conv's output."""
    parents = {id(m): (p, n) for p in model.modules() for n, m in p.named_children()}
    outputs, pairs, hooks = {}, [], []

    def after_conv(mod, inp, out):
        outputs[id(out)] = (mod, out)  # holding ``out`` keeps its id from being reused by a later tensor

    def before_bn(mod, inp):
        conv, out = outputs.get(id(inp[0]), (None, None))
        if conv is not None and out is inp[0] and conv.out_channels == mod.num_features and id(mod) in parents \
                and mod.running_var is not None and conv.padding_mode == "zeros":
            pairs.append((*parents[id(mod)], conv, mod))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(before_bn))
    try:
        with torch.inference_mode():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    seen = {}
    for pair in pairs:  # a BatchNorm called twice (shared) is folded once, and only if always after one conv
        seen.setdefault(id(pair[3]), []).append(pair)
    return [ps[0] for ps in seen.values() if all(p[2] is ps[0][2] for p in ps)]


def _affine_to_act(bn: nn.BatchNorm2d) -> nn.Module:
    """What remains of a BatchNorm once folded: timm's ``BatchNormAct2d`` keeps its dropout and activation."""
    rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if isinstance(m, nn.Module)]
    return nn.Sequential(*rest) if rest else nn.Identity()


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple:
    """The weight and bias of ``bn(conv(x))`` as one conv, BatchNorm in eval mode (running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(scale)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    return conv.weight * scale.view(-1, 1, 1, 1), shift + (bias - bn.running_mean) * scale


def _fold(model: nn.Module, resolution: int) -> tuple:
    """``(eval-mode copy with the pairs folded, [(conv name, bn name)] of the pairs)``."""
    model = copy.deepcopy(model).eval()
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return model, []
    p = next(model.parameters())
    sample = torch.zeros(1, first.in_channels, resolution, resolution, device=p.device, dtype=p.dtype)
    try:
        pairs = conv_bn_pairs(model, sample)
    except (RuntimeError, ValueError, AssertionError):  # e.g. a fixed input size: evaluate unfolded
        return model, []
    names = {id(m): n for n, m in model.named_modules()}
    for parent, name, conv, bn in pairs:
        with torch.no_grad():
            weight, bias = _folded(conv, bn)
            conv.weight.copy_(weight)
            conv.bias = nn.Parameter(bias, requires_grad=False)
        setattr(parent, name, _affine_to_act(bn))
    return model, [(names[id(conv)], names[id(bn)]) for _, _, conv, bn in pairs]


def fold_batchnorm(model: nn.Module, resolution: int = 32) -> nn.Module:
    """An eval-mode copy of ``model`` with every conv -> BatchNorm pair folded into the conv.

    ``resolution``: side of the one image the pairs are traced with (use the size the model will
    see: some models accept only their own input size). A model without BatchNorm, or one that
    cannot run that image, comes back unfolded: same outputs, only not faster.
    """
    return _fold(model, resolution)[0]


# live model -> (its structure, the folded copy, its pairs); an entry goes when its model does
_FOLDED = weakref.WeakKeyDictionary()


def _structure(model: nn.Module, resolution: int) -> tuple:
    p = next(model.parameters(), None)
    return (resolution, tuple((n, id(m)) for n, m in model.named_modules()),
            None if p is None else (p.device, p.dtype), tuple(n for n, _ in model.named_parameters()))


def folded_view(model: nn.Module, resolution: int = 32) -> nn.Module:
    """``fold_batchnorm(model, resolution)``, built once per model and refreshed from its current weights.

    ``evaluate`` runs once per epoch on the same model with new weights: the copy and the search for
    conv -> BatchNorm pairs (~0.1 s for lite0 on 2 cores) are done once, and each call only copies the
    weights and refolds the pairs (``_folded``). A change of modules, parameter names, device, dtype or
    ``resolution`` rebuilds it.
    The result belongs to the cache: read it, do not train or modify it.
    """
    key = _structure(model, resolution)
    hit = _FOLDED.get(model)
    if hit is None or hit[0] != key:
        twin, pairs = _fold(model, resolution)
        _FOLDED[model] = (key, twin, pairs)
        return twin
    _, twin, pairs = hit
    folded_params = {f"{conv}.{w}" for conv, _ in pairs for w in ("weight", "bias")}
    params, buffers = dict(twin.named_parameters()), dict(twin.named_buffers())
    live = dict(model.named_modules())
    with torch.inference_mode():  # in place on the copy's tensors, also when they were made in inference mode
        for n, p in model.named_parameters():
            if n in params and n not in folded_params:
                params[n].copy_(p)
        for n, b in model.named_buffers():
            if n in buffers:
                buffers[n].copy_(b)
        for conv, bn in pairs:
            weight, bias = _folded(live[conv], live[bn])
            params[f"{conv}.weight"].copy_(weight)
            params[f"{conv}.bias"].copy_(bias)
    return twin
