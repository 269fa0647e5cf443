"""Datasets as decoded uint8 tensors with seeded, stratified k-shot splits.

Every image is decoded once, resized to the run's resolution and cached (in memory and
under ``data/cache/``), so no epoch touches a JPEG again. ``load_dataset`` looks in
``data/`` first, then in the offline mirrors (``$FTLIB_DATA_MIRROR``, ``../shared/datasets``),
then downloads from the official source.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from . import sources
from .errors import FtlibError, unknown
from .cache import atomic_save, verified_load
from .splits import split_indices
from .transforms import to_float

DATASETS = ("hymenoptera", "cifar10", "fashion_mnist", "caltech101")
# The side every image is resized to when a caller names none (load_dataset, RunConfig): the default
# backbone's pretraining input size (tf_efficientnet_lite0: 224 px); a test keeps the two equal.
DEFAULT_RESOLUTION = 224
# below 16 px the backbones' stride-32 features collapse; above 1024 px one decoded image is 3 MB and a
# decoded dataset of thousands of images no longer fits in memory
RESOLUTION_RANGE = (16, 1024)
_MEMORY: dict = {}  # (name, resolution, fingerprint) -> Decoded


@dataclass
class Decoded:
    """All images of a dataset at one resolution, plus where the official splits are."""

    images: torch.Tensor  # uint8 [N, C, H, W], C in {1, 3}
    labels: torch.Tensor  # int64 [N]
    classes: list
    role: np.ndarray  # per image: "train", "val" or "test" as the source ships it ("" = unassigned)
    fingerprint: str = ""
    origin: str = ""  # which copy of the data: "official", "jpeg-mirror" (CIFAR-10), "folder"


class ImageTensors(torch.utils.data.Dataset):
    """A split: uint8 images kept as one tensor; items are ``(float image in [0, 1], label)``.

    ``ftlib.fit`` slices ``images`` and ``labels`` in batches directly; ``__getitem__``
    exists so the split also drops into a plain ``DataLoader``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list, resolution: int,
                 indices=None, source: str = ""):
        self.images, self.labels, self.classes, self.resolution = images, labels, classes, resolution
        # where these images sit in the whole decoded dataset: lets feature caches be shared by every split
        self.indices = torch.arange(len(labels)) if indices is None else torch.as_tensor(indices)
        self.source = source

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return to_float(self.images[i : i + 1], self.resolution)[0], int(self.labels[i])

    def counts(self) -> dict:
        """Images per class name."""
        c = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, c))


@dataclass
class SplitDataset:
    """What ``load_dataset`` returns: ``train``, ``val``, ``test`` splits and the class names."""

    name: str
    classes: list
    train: ImageTensors
    val: ImageTensors
    test: ImageTensors
    shots: object
    seed: int
    resolution: int
    sizes: dict = field(default_factory=dict)
    origin: str = ""  # which copy of the data was read ("official", "jpeg-mirror", "folder")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"SplitDataset({self.name!r}, classes={len(self.classes)}, train={len(self.train)}, "
                f"val={len(self.val)}, test={len(self.test)}, shots={self.shots!r}, seed={self.seed}, "
                f"resolution={self.resolution})")


def decode(name: str, resolution: int) -> Decoded:
    """Decode a whole dataset at ``resolution`` once (memory, then ``data/cache/``, then the files)."""
    src = sources.locate(name)
    resolution = getattr(src, "native", None) or resolution  # small native images are resized per batch
    key = (name, resolution, src.fingerprint)
    if key in _MEMORY:
        return _MEMORY[key]
    tag = hashlib.sha1(f"{name}|{src.fingerprint}".encode(errors="surrogateescape")).hexdigest()[:12]
    safe = name.replace(":", "_").replace("/", "_").strip("_")[-40:]
    path = sources.cache_path(f"{safe}-{resolution}px-{tag}.pt")
    blob = verified_load(path)  # None when missing or damaged; tensors and plain lists only, never code
    if blob is None:
        images, labels, classes, role = src.read(resolution)
        blob = {"images": images, "labels": labels, "classes": [str(c) for c in classes],
                "role": [str(r) for r in role]}
        atomic_save(blob, path)
    dec = Decoded(blob["images"], blob["labels"], list(blob["classes"]), np.asarray(blob["role"]), src.fingerprint,
                  getattr(src, "origin", "folder"))
    _MEMORY[key] = dec
    return dec


def check_resolution(resolution, name: str = "resolution") -> int:
    """``resolution`` if it is an integer in ``RESOLUTION_RANGE``, else an error that says why."""
    lo, hi = RESOLUTION_RANGE
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not lo <= resolution <= hi:
        raise FtlibError(f"{name} must be an integer from {lo} to {hi} px, got {resolution!r} (below {lo} the "
                         f"backbones' features collapse; above {hi} the decoded images do not fit in memory)")
    return int(resolution)


def clear_memory() -> None:
    """Forget the decoded datasets this process holds (the disk cache stays)."""
    _MEMORY.clear()


def load_dataset(name: str, shots="all", seed: int = 0, resolution: int | None = None,
                 max_test_per_class: int | None = None, val_per_class: int = 0,
                 test_fraction: float | None = None) -> SplitDataset:
    """Load a dataset with a seeded, stratified split.

    Args:
        name: ``hymenoptera``, ``cifar10``, ``fashion_mnist``, ``caltech101`` or ``imagefolder:<path>``.
        shots: ``"all"`` or an int k: exactly k training images per class.
        seed: chooses ``val`` (carved from the training data, stratified) and the k-shot subset;
            the same seed gives the same split on any machine.
        resolution: square side the images are resized to (default ``DEFAULT_RESOLUTION``, 224).
        max_test_per_class: keep at most this many test images per class (a fixed subset, the
            same for every seed) to make evaluation cheaper; None keeps the whole test split.
        val_per_class: labelled val images per class, carved before the k shots (default 0: none;
            a k-shot run then reads exactly k labelled images per class).
        test_fraction: None keeps the dataset's own test split (or its fixed 20% carve); a number F
            carves a fixed F of each class from all its images instead; 0 leaves no test split.

    Example:
        >>> ds = load_dataset("hymenoptera", shots=5, seed=0, resolution=64)
        >>> len(ds.train), ds.classes
        (10, ['ants', 'bees'])
    """
    if not (name in DATASETS or str(name).startswith("imagefolder:")):
        raise unknown("dataset", name, [*DATASETS, "imagefolder:<path>"])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise FtlibError(f"seed must be an integer, got {seed!r}")
    resolution = DEFAULT_RESOLUTION if resolution is None else resolution
    check_resolution(resolution)
    dec = decode(name, resolution)
    idx = split_indices(dec.labels.numpy(), dec.role, dec.classes, shots=shots, seed=int(seed),
                        max_test_per_class=max_test_per_class, val_per_class=val_per_class,
                        test_fraction=test_fraction)
    source = f"{name}|{resolution}px|{dec.fingerprint}"
    parts = {k: ImageTensors(dec.images[v], dec.labels[v], dec.classes, resolution, v, source)
             for k, v in idx.items()}
    return SplitDataset(name, dec.classes, parts["train"], parts["val"], parts["test"], shots, int(seed),
                        resolution, {k: len(v) for k, v in idx.items()}, dec.origin)
