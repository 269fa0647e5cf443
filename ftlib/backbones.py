"""Load ImageNet-pretrained backbones (timm or torchvision) with their normalisation and block map.

``bb.blocks`` is the ordered list of ``(name, module)`` from stem to head that partial
unfreezing, L2-SP reports and per-block weight distances use; it covers every
parameter exactly once.
"""
from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass

from torch import nn

from .errors import FtlibError, unknown
from .weights import PACKAGED, load_packaged_weights

DEFAULT_BACKBONE = "timm/tf_efficientnet_lite0"
SOURCES = ("timm", "torchvision")
# Parameters under these containers form numbered blocks; anything before the first is
# the "stem", anything after the last (but not the classifier) is the "neck".
_BLOCK = re.compile(r"^((?:blocks|stages|features|layers|encoder\.layers)\.(?:[a-z_]+_)?\d+|layer\d+)\.")


@dataclass
class Backbone:
    """A model plus what fine-tuning needs to know about it.

    Example:
        >>> bb = load_backbone("timm/tf_efficientnet_lite0", num_classes=2, pretrained=False)
        >>> bb.blocks[0][0], bb.blocks[-1][0], bb.mean
        ('stem', 'head', (0.5, 0.5, 0.5))
    """

    name: str
    model: nn.Module
    mean: tuple
    std: tuple
    input_size: int
    blocks: list  # [(block_name, nn.Module)], stem -> head
    head_name: str  # dotted module path of the classifier Linear
    pretrained: bool

    @property
    def head(self) -> nn.Linear:
        return self.model.get_submodule(self.head_name)

    def block_of(self) -> dict:
        """Map every parameter name of ``model`` to the name of its block."""
        ids = {id(p): b for b, m in self.blocks for p in m.parameters()}
        return {n: ids[id(p)] for n, p in self.model.named_parameters()}


class Block(nn.Module):
    """A view that groups existing modules and loose parameters of a model under one name."""

    def __init__(self, modules: dict, params: dict):
        super().__init__()
        self.parts = nn.ModuleDict({k.replace(".", "__"): m for k, m in modules.items()})
        for k, p in params.items():
            self.register_parameter(k.replace(".", "__"), p)


HUB_PROBE_SECONDS = 1.0  # how long a connect to the Hub may take before ftlib treats the machine as offline


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face Hub (``$HF_ENDPOINT``, else huggingface.co) accepts a TCP connection in ``timeout`` s.

    Name resolution runs in a thread, so a resolver that hangs counts as offline too.
    """
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    name, _, port = host.partition(":")
    ok = []

    def connect():
        try:
            socket.create_connection((name, int(port or 443)), timeout=timeout).close()
            ok.append(True)
        except (OSError, ValueError):
            pass

    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _hub_offline() -> None:
    """Hub offline mode: weights come from the local cache or fail at once, instead of after minutes of retries."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub

        hub.HF_HUB_OFFLINE = True  # read at import time: set the imported value too
    except ImportError:
        pass


def _offline_note() -> str:
    return f"offline weights exist for {', '.join('timm/' + m for m in PACKAGED)}; or use pretrained=False"


def _timm(model_name: str, pretrained: bool):
    import timm

    if model_name not in timm.list_models():
        raise unknown("timm model", model_name, [m for m in timm.list_models() if "efficientnet_lite" in m])
    if model_name in PACKAGED:
        model = timm.create_model(model_name, pretrained=False)
        if pretrained:
            load_packaged_weights(model, model_name)
    else:
        offline = pretrained and (os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or not hub_reachable())
        if offline:
            _hub_offline()
        try:
            model = timm.create_model(model_name, pretrained=pretrained)
        except Exception as e:  # network or hub errors: say what works offline
            why = "the Hugging Face Hub is not reachable and they are not in its local cache" if offline else \
                f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            raise FtlibError(f"could not fetch pretrained weights for timm/{model_name} ({why}); "
                             f"{_offline_note()}") from None
    cfg = model.pretrained_cfg
    head = _module_name(model, model.get_classifier())
    return model, tuple(cfg["mean"]), tuple(cfg["std"]), int(cfg["input_size"][-1]), head


def _torchvision(model_name: str, pretrained: bool):
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if model_name not in names:
        raise unknown("torchvision model", model_name, names)
    weights = torchvision.models.get_model_weights(model_name).DEFAULT
    try:
        model = torchvision.models.get_model(model_name, weights=weights if pretrained else None)
    except Exception as e:
        raise FtlibError(
            f"could not fetch torchvision weights {weights} for {model_name} ({type(e).__name__}: {e}); they are "
            f"cached in $TORCH_HOME once downloaded; {_offline_note()}"
        ) from e
    tf = weights.transforms()
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return model, tuple(tf.mean), tuple(tf.std), int(tf.crop_size[0]), linears[-1]


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _replace_head(model: nn.Module, head_name: str, num_classes: int) -> None:
    if hasattr(model, "reset_classifier"):  # timm's contract
        model.reset_classifier(num_classes)
        return
    old = model.get_submodule(head_name)
    parent, _, attr = head_name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, nn.Linear(old.in_features, num_classes))


def build_blocks(model: nn.Module, head_name: str) -> list:
    """Group ``model``'s parameters into ordered blocks: stem, numbered blocks, neck, head.

    A block is named after its container (``blocks.3``, ``layer2``, ``features.5``); the
    modules before the first numbered block form ``stem``, those after the last form
    ``neck``, and the classifier is ``head``.
    """
    order, groups = [], {}
    seen_block = False
    for pname, p in model.named_parameters():
        if pname.startswith(head_name + "."):
            key = "head"
        elif m := _BLOCK.match(pname):
            key, seen_block = m.group(1), True
        else:
            key = "neck" if seen_block else "stem"
        if key not in groups:
            order.append(key)
            groups[key] = []
        groups[key].append(pname)
    key_of = {p: k for k, names in groups.items() for p in names}
    blocks = []
    for key in order:
        modules, params = {}, {}
        for pname in groups[key]:
            path = _widest_owner(model, pname, key, key_of)
            if path:
                modules.setdefault(path, model.get_submodule(path))
            else:
                params[pname] = model.get_parameter(pname)
        blocks.append((key, Block(modules, params)))
    return blocks


def _widest_owner(model: nn.Module, pname: str, key: str, key_of: dict) -> str:
    """The shortest module path above ``pname`` whose parameters all belong to block ``key``."""
    parts = pname.split(".")[:-1]
    for i in range(1, len(parts) + 1):
        path = ".".join(parts[:i])
        names = (f"{path}.{n}" for n, _ in model.get_submodule(path).named_parameters())
        if all(key_of[n] == key for n in names):
            return path
    return ""  # a parameter held directly by a container shared with other blocks


def load_backbone(name: str = DEFAULT_BACKBONE, num_classes: int | None = None, pretrained: bool = True) -> Backbone:
    """Load ``timm/<model>`` or ``torchvision/<model>``, optionally with a fresh ``num_classes`` head.

    Args:
        name: ``"timm/tf_efficientnet_lite0"`` (offline weights) or any timm / torchvision model name.
        num_classes: None keeps the 1000-class ImageNet head; an int replaces it with a new Linear.
        pretrained: False gives the same architecture randomly initialised (the scratch baseline).

    Example:
        >>> import torch
        >>> bb = load_backbone("torchvision/resnet18", num_classes=5, pretrained=False)
        >>> bb.model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 5])
    """
    source, _, model_name = str(name).partition("/")
    if source not in SOURCES or not model_name:
        raise FtlibError(f"backbone names look like 'timm/<model>' or 'torchvision/<model>', got {name!r}; "
                         f"offline: {', '.join('timm/' + m for m in PACKAGED)}")
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise FtlibError(f"num_classes must be a positive int or None, got {num_classes!r}")
    build = _timm if source == "timm" else _torchvision
    model, mean, std, size, head_name = build(model_name, pretrained)
    if num_classes is not None:
        _replace_head(model, head_name, num_classes)
        head_name = _module_name(model, model.get_classifier()) if hasattr(model, "get_classifier") else head_name
    blocks = build_blocks(model, head_name)
    return Backbone(f"{source}/{model_name}", model, mean, std, size, blocks, head_name, pretrained)
