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
from .cache import atomic_save, digest
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


ACCEPTED = ("a path, a PIL image, a list of them, or a tensor [N, C, H, W] / [C, H, W] with C = 1 or 3: "
            "uint8 in 0..255 or float in [0, 1]")


def _tensor_as_uint8(x: torch.Tensor) -> torch.Tensor:
    """A tensor batch as uint8 ``[N, C, H, W]``; floats in [0, 1] are scaled to 0..255, anything else is refused."""
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise FtlibError(f"predict got a tensor of shape {tuple(x.shape)}; it takes {ACCEPTED}")
    if x.shape[1] not in (1, 3):
        hint = (" (channels last? use x.permute(0, 3, 1, 2))" if x.shape[-1] in (1, 3, 4) else "")
        hint += " (RGBA? drop or composite the alpha channel, or pass the PIL image)" if x.shape[1] == 4 else ""
        raise FtlibError(f"predict got a tensor of shape {tuple(x.shape)}: {x.shape[1]} channels{hint}; "
                         f"it takes {ACCEPTED}")
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point():
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails too
            raise FtlibError(f"predict got a float tensor with values from {lo:g} to {hi:g}; float images must be in "
                             "[0, 1] (not normalised: ftlib normalises itself), or pass uint8 in 0..255")
        return (x.detach().cpu().float() * 255).round_().to(torch.uint8)
    raise FtlibError(f"predict got a tensor of dtype {x.dtype}; it takes {ACCEPTED}")


def _as_uint8(images, resolution: int) -> torch.Tensor:
    """Paths, PIL images, or a uint8 (or [0, 1] float) tensor -> uint8 batch ``[N, C, H, W]`` at ``resolution``."""
    if isinstance(images, torch.Tensor):
        return _tensor_as_uint8(images)
    from .images import center_crop, decode

    out = []
    for im in images:
        if isinstance(im, Image.Image):
            arr = center_crop(im, resolution)
        elif isinstance(im, (str, Path)):
            arr = decode(Path(im), resolution)
            if arr is None:
                raise FtlibError(f"cannot read image {im}")
        else:
            raise FtlibError(f"predict got a list holding a {type(im).__name__}; it takes {ACCEPTED}")
        out.append(torch.from_numpy(np.array(arr)).permute(2, 0, 1))  # a writable copy
    return torch.stack(out)


def predict(model: FineTuned, images, top: int = 1):
    """Class names and probabilities for images (a path, a list of paths or PIL images, or an image tensor).

    A tensor is ``[N, C, H, W]`` or ``[C, H, W]`` with 1 or 3 channels, uint8 in 0..255 or float in
    [0, 1]. Returns a list with, per image, ``[(class_name, probability), ...]`` (``top`` best).

    Example:
        >>> ft = load_finetuned("data/models/ants.pt")  # doctest: +SKIP
        >>> predict(ft, ["bee.jpg"])  # doctest: +SKIP
        [[('bees', 0.97)]]
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise FtlibError(f"top must be an integer >= 1 (how many best classes to return), got {top!r}")
    if isinstance(images, (str, Path, Image.Image)):  # one image
        images = [images]
    if not isinstance(images, (torch.Tensor, list, tuple)):
        hint = " (give list(...) of it)" if hasattr(images, "__iter__") and not hasattr(images, "shape") else \
            (" (a numpy array: torch.from_numpy(a).permute(2, 0, 1) for one HWC image)" if hasattr(images, "shape")
             else "")
        raise FtlibError(f"predict got a {type(images).__name__}{hint}; it takes {ACCEPTED}")
    if not isinstance(images, torch.Tensor) and len(images) == 0:
        raise FtlibError("predict needs at least one image (a path, a list of paths or PIL images, or a uint8 "
                         "tensor); got an empty list")
    if isinstance(images, torch.Tensor) and images.numel() == 0:
        raise FtlibError("predict needs at least one image; got an empty tensor")
    batch = _as_uint8(images, model.resolution)

    probs = torch.softmax(predict_logits(model.model, _Wrap(batch, model.resolution), model.mean, model.std), 1)
    best = probs.topk(min(int(top), probs.shape[1]), dim=1)
    return [[(model.classes[i], float(p)) for p, i in zip(ps, ix)] for ps, ix in zip(best.values, best.indices)]


class _Wrap:
    """The minimal split interface ``predict_logits`` reads: ``images``, ``resolution`` and ``len``."""

    def __init__(self, images, resolution):
        self.images, self.resolution = images, resolution

    def __len__(self):
        return len(self.images)


def image_files(paths) -> tuple:
    """Files to classify: a file as given; a folder searched recursively for image files (sorted; hidden
    names, such as macOS's ``._photo.jpg``, skipped).

    Returns ``(files, missing)``: the files found, and the given paths that do not exist.
    """
    from .images import IMAGE_EXTS

    files, missing = [], []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and not f.is_dir()
                            and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.exists():
            files.append(p)
        else:
            missing.append(p)
    return files, missing


def predict_files(model: FineTuned, paths, top: int = 1, batch: int = 64) -> tuple:
    """Classify image files and folders (searched recursively); skip what cannot be read.

    Returns ``(rows, skipped)``: per readable image ``{"path", "top": [(class, probability), ...]}``
    in input order, and ``[(path, why), ...]`` for each file that could not be read.

    Example:
        >>> rows, skipped = predict_files(load_finetuned("m/model.pt"), ["photos/"], top=2)  # doctest: +SKIP
        >>> rows[0]["path"], rows[0]["top"]  # doctest: +SKIP
        ('photos/a.jpg', [('bees', 0.93), ('ants', 0.07)])
    """
    from .images import decode

    files, missing = image_files(paths)
    skipped = [(str(p), "no such file or folder") for p in missing]
    rows = []
    for i in range(0, len(files), batch):
        arrays, names = [], []
        for f in files[i: i + batch]:
            arr = decode(f, model.resolution)
            if arr is None:
                skipped.append((str(f), "not a readable image"))
            else:
                arrays.append(torch.from_numpy(np.array(arr)).permute(2, 0, 1))
                names.append(str(f))
        if arrays:
            for name, best in zip(names, predict(model, torch.stack(arrays), top=top)):
                rows.append({"path": name, "top": best})
    return rows, skipped
