"""Save a fine-tuned model (state dict + the config that rebuilds it, no pickled code), reload it, predict."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .backbones import load_backbone
from .errors import FtlibError
from .paths import atomic_save, digest
from .train import predict_logits

# version 1: state_dict + config + sha256 of the weights; a reader refuses versions it does not know
CHECKPOINT_FORMAT = 1
_FIELDS = ("backbone", "classes", "resolution", "mean", "std", "meta", "state_dict")


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
    state = {k: v.detach().cpu().contiguous() for k, v in bb.model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FtlibError(f"refusing to save {path}: non-finite weights (NaN or inf) in {', '.join(bad[:3])}")
    blob = {"format": CHECKPOINT_FORMAT, "sha256": digest(state), "backbone": bb.name, "classes": list(classes),
            "resolution": int(resolution), "mean": list(bb.mean), "std": list(bb.std), "meta": plain,
            "state_dict": state}
    atomic_save(blob, path, checksum=False, hint="choose a path in a writable folder with free space")
    return path


def load_finetuned(path, device="cpu") -> FineTuned:
    """Rebuild the architecture (no download: ``pretrained=False``) and load the saved weights.

    The file is checked before it is used: its format version, the sha256 of its weights, finite
    values, and that every tensor fits the architecture; anything else is an ``FtlibError`` naming
    the file and the problem.
    """
    path = Path(path)
    blob = _read_checkpoint(path)
    try:
        bb = load_backbone(blob["backbone"], num_classes=len(blob["classes"]), pretrained=False)
    except FtlibError as e:
        raise FtlibError(f"saved model {path} names a backbone this ftlib cannot build: {e}") from None
    try:
        bb.model.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as e:  # missing/unexpected keys or wrong shapes (e.g. another number of classes)
        detail = " ".join(str(e).split())[:300]
        raise FtlibError(f"saved model {path} does not fit {blob['backbone']} with {len(blob['classes'])} "
                         f"classes: {detail}") from None
    bb.model.to(device).eval()
    return FineTuned(bb.model, blob["classes"], blob["resolution"], tuple(blob["mean"]), tuple(blob["std"]),
                     blob["meta"])


def _read_checkpoint(path: Path) -> dict:
    """The checked contents of a ``save_finetuned`` file, or an ``FtlibError`` naming what is wrong."""
    how = "save one with ftlib.save_finetuned(path, bb, classes, resolution)"
    if path.is_dir():
        raise FtlibError(f"{path} is a folder, not a saved model file; {how}")
    if not path.exists():
        raise FtlibError(f"no saved model at {path}; {how}")
    if path.stat().st_size == 0:
        raise FtlibError(f"saved model {path} is empty (0 bytes): an interrupted copy or write; save it again")
    try:
        with warnings.catch_warnings():  # a foreign pickle makes torch warn first; the message below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated / overwritten zip, a pickle of code objects, a text file
        raise FtlibError(f"cannot read saved model {path}: damaged, truncated, or not a file save_finetuned "
                         f"wrote ({type(e).__name__})") from None
    if not isinstance(blob, dict) or not all(k in blob for k in _FIELDS):
        raise FtlibError(f"{path} is not a model saved by ftlib.save_finetuned (a torch file without its "
                         f"fields: {', '.join(_FIELDS)})")
    if "format" not in blob or "sha256" not in blob:
        raise FtlibError(f"saved model {path} has no format version or checksum, so it cannot be verified; "
                         "save it again with this ftlib")
    if blob["format"] != CHECKPOINT_FORMAT:
        raise FtlibError(f"saved model {path} has format {blob['format']!r}; this ftlib reads format "
                         f"{CHECKPOINT_FORMAT}")
    state = blob["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FtlibError(f"saved model {path} is damaged: its state_dict is not a dict of tensors")
    if digest(state) != blob["sha256"]:
        raise FtlibError(f"saved model {path} is damaged: the weights' sha256 does not match the one stored "
                         "when it was saved")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FtlibError(f"saved model {path} holds non-finite weights (NaN or inf) in {', '.join(bad[:3])}")
    return blob


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
    """Class names and probabilities for images (a path, a list of paths or PIL images, or a uint8 batch).

    Returns a list with, per image, ``[(class_name, probability), ...]`` (``top`` best).

    Example:
        >>> ft = load_finetuned("data/models/ants.pt")  # doctest: +SKIP
        >>> predict(ft, ["bee.jpg"])  # doctest: +SKIP
        [[('bees', 0.97)]]
    """
    if isinstance(images, (str, Path)):  # one file
        images = [images]
    if not isinstance(images, torch.Tensor) and len(images) == 0:
        raise FtlibError("predict needs at least one image (a path, a list of paths or PIL images, or a uint8 "
                         "tensor); got an empty list")
    if isinstance(images, torch.Tensor) and images.numel() == 0:
        raise FtlibError("predict needs at least one image; got an empty tensor")
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
