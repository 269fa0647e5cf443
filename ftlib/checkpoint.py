"""Save a fine-tuned model (state dict + the config that rebuilds it, no pickled code), reload it, predict."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .backbones import load_backbone
from .errors import FtlibError
from .paths import atomic_save
from .train import predict_logits


@dataclass
class FineTuned:
    """A reloaded model with everything needed to preprocess and name its predictions."""

    model: torch.nn.Module
    classes: list
    resolution: int
    mean: tuple
    std: tuple
    meta: dict


def save_finetuned(path, bb, classes, resolution: int, meta: dict | None = None) -> Path:
    """Write ``bb.model``'s weights and the plain-data config that rebuilds it.

    Example:
        >>> record, bb, ds = ftlib.run(cfg, return_model=True)  # doctest: +SKIP
        >>> save_finetuned("data/models/ants.pt", bb, ds.classes, ds.resolution, record)  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # plain Python types only, so torch.load(weights_only=True) can read it back (torch.__version__ is a str subclass)
    plain = {k: (v if v is None or type(v) in (bool, int, float) else str(v)) for k, v in (meta or {}).items()
             if isinstance(v, (str, int, float, bool, type(None)))}
    blob = {"backbone": bb.name, "classes": list(classes), "resolution": int(resolution),
            "mean": list(bb.mean), "std": list(bb.std), "meta": plain,
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in bb.model.state_dict().items()}}
    atomic_save(blob, path)
    return path


def load_finetuned(path, device="cpu") -> FineTuned:
    """Rebuild the architecture (no download: ``pretrained=False``) and load the saved weights."""
    path = Path(path)
    if not path.exists():
        raise FtlibError(f"no saved model at {path}; save one with ftlib.save_finetuned(path, bb, classes, resolution)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    bb = load_backbone(blob["backbone"], num_classes=len(blob["classes"]), pretrained=False)
    bb.model.load_state_dict(blob["state_dict"], strict=True)
    bb.model.to(device).eval()
    return FineTuned(bb.model, blob["classes"], blob["resolution"], tuple(blob["mean"]), tuple(blob["std"]),
                     blob["meta"])


def _as_uint8(images, resolution: int) -> torch.Tensor:
    """Paths, PIL images, or a uint8 ``[N, C, H, W]`` tensor -> uint8 batch at ``resolution``."""
    if isinstance(images, torch.Tensor):
        return images if images.ndim == 4 else images[None]
    from .sources import _decode, center_crop

    out = []
    for im in images:
        arr = center_crop(im, resolution) if isinstance(im, Image.Image) else _decode(Path(im), resolution)
        if arr is None:
            raise FtlibError(f"cannot read image {im}")
        out.append(torch.from_numpy(np.array(arr)).permute(2, 0, 1))  # a writable copy
    return torch.stack(out)


def predict(model: FineTuned, images, top: int = 1):
    """Class names and probabilities for images (file paths, PIL images or a uint8 tensor batch).

    Returns a list with, per image, ``[(class_name, probability), ...]`` (``top`` best).

    Example:
        >>> ft = load_finetuned("data/models/ants.pt")  # doctest: +SKIP
        >>> predict(ft, ["bee.jpg"])  # doctest: +SKIP
        [[('bees', 0.97)]]
    """
    batch = _as_uint8(images, model.resolution)

    probs = torch.softmax(predict_logits(model.model, _Wrap(batch, model.resolution), model.mean, model.std), 1)
    best = probs.topk(min(top, probs.shape[1]), dim=1)
    return [[(model.classes[i], float(p)) for p, i in zip(ps, ix)] for ps, ix in zip(best.values, best.indices)]


class _Wrap:
    """The minimal split interface ``predict_logits`` reads: ``images``, ``resolution`` and ``len``."""

    def __init__(self, images, resolution):
        self.images, self.resolution = images, resolution

    def __len__(self):
        return len(self.images)
