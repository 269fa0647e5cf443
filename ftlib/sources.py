"""Where each dataset's files are found (``data/``, offline mirrors, download) and how they are read into tensors
(each image file decoded by ``ftlib.images``)."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import FtlibError
from .images import IMAGE_EXTS, decode
from .paths import cache_dir, data_root, mirrors
from .splits import check_class_counts

HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
FASHION_FILES = [f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_BATCHES = "cifar-10-batches-py"  # what torchvision.datasets.CIFAR10(download=True) extracts
# top sub-folders that make an image folder a split layout, and the role each plays (val/ is decided later)
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
_IDENTITY: dict = {}  # absolute folder -> (stamp of its folders' mtimes, fingerprint): run keys stay cheap


def cache_path(filename: str) -> Path:
    return cache_dir("cache") / filename


@dataclass
class FolderSource:
    """Images in class subfolders; ``roles`` maps a top sub-folder (``train``/``val``/``test``) to a split."""

    root: Path
    roles: dict  # subfolder name ("" = root itself) -> role
    skip_classes: tuple = ()
    origin: str = "folder"  # recorded in every run's row as ``data_source``
    native: int | None = None  # store images at this side (resized per batch) instead of the run's resolution

    def files(self):
        """``(path, class, role)`` of every image file, found as torchvision's ``ImageFolder`` finds them.

        Class folders are the sub-folders of each split folder; images nested deeper inside a class
        belong to it. Names starting with a dot (``.ipynb_checkpoints``, ``.DS_Store``) are skipped.
        """
        if getattr(self, "_items", None) is not None:
            return self._items
        items, folders = [], []
        for sub, role in self.roles.items():
            base = self.root / sub if sub else self.root
            for cdir in _subfolders(base):
                if cdir.name in self.skip_classes:
                    continue
                folders.append(cdir)
                items += [(f, cdir.name, role) for f in _image_files(cdir)]
        present = {c for _, c, _ in items}
        empty = [str(d.relative_to(self.root)) for d in folders if d.name not in present]
        if empty:  # documented choice: a class folder with no image is not a class; say so, don't stop
            warnings.warn(f"{len(empty)} class folder(s) under {self.root} hold no image file and are left out: "
                          f"{', '.join(empty[:5])}" + (" ..." if len(empty) > 5 else ""), stacklevel=3)
        self._items = items
        return items

    @property
    def fingerprint(self) -> str:
        """Every image file's relative name, size, modification time and inode, with its class and role.

        An image re-saved in place at the same size changes its modification time, so the decoded
        cache (and the run keys of an ``imagefolder:``) notice it.
        """
        h = hashlib.sha1()
        for f, c, r in self.files():
            try:
                st = os.stat(f)
                meta = f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
            except OSError:
                meta = "unreadable"
            # file names are bytes to the OS: a non-UTF-8 name comes back as surrogates, which plain encode() refuses
            h.update(os.fsencode(f.relative_to(self.root)) + f"|{meta}|{c}|{r}\n".encode(errors="surrogateescape"))
        return h.hexdigest()[:16]

    def read(self, resolution: int):
        resolution = self.native or resolution
        items = self.files()
        classes = sorted({c for _, c, _ in items})
        check_class_counts(classes)  # one class (or none): refused before decoding anything
        with ThreadPoolExecutor(4) as pool:  # PIL releases the GIL while decoding
            decoded = list(pool.map(lambda it: decode(it[0], resolution, with_digest=True), items))
        arrays = [a for a, _ in decoded]
        _warn_duplicates(self.root, items, [d for _, d in decoded])
        bad = [str(f) for (f, _, _), a in zip(items, arrays) if a is None]
        if bad:  # documented choice: skip unreadable files, say how many and which
            warnings.warn(f"skipped {len(bad)} unreadable image file(s): {', '.join(bad[:5])}"
                          + (" ..." if len(bad) > 5 else ""), stacklevel=3)
        keep = [i for i, a in enumerate(arrays) if a is not None]
        if not keep:
            raise FtlibError(f"no readable images found under {self.root}")
        images = torch.from_numpy(np.stack([arrays[i] for i in keep])).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor([classes.index(items[i][1]) for i in keep], dtype=torch.int64)
        return images, labels, classes, np.array([items[i][2] for i in keep])


def _subfolders(base: Path) -> list:
    """The visible sub-folders of ``base``, sorted (names starting with a dot are hidden)."""
    try:
        return sorted(p for p in base.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError as e:
        raise FtlibError(f"cannot read folder {base} ({e.strerror or e}); check that it exists and is readable") \
            from None


def _image_files(cdir: Path) -> list:
    """Image files anywhere under ``cdir`` (sorted; hidden names skipped; each real folder visited once)."""
    out, seen = [], set()
    for top, dirs, names in os.walk(cdir, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a symlink loop, or two links to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(top) / n for n in sorted(names)
                if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTS]
    return sorted(out)


def _warn_duplicates(root: Path, items, digests) -> None:
    """Warn about byte-identical files in two splits (test leaks into training) or two classes (two labels)."""
    groups = {}
    for (f, c, r), d in zip(items, digests):
        if d is not None:
            groups.setdefault(d, []).append((f, c, r))
    copies = [g for g in groups.values() if len(g) > 1]
    splits = [g for g in copies if len({r for _, _, r in g}) > 1]
    classes = [g for g in copies if len({c for _, c, _ in g}) > 1]
    for what, found, why, part in (
            ("split folders", splits, "a test image seen in training inflates the test score", 2),
            ("classes", classes, "the same image under two labels contradicts itself", 1)):
        if found:
            a = found[0][0]
            b = next(g for g in found[0] if g[part] != a[part])
            first = f"{a[0].relative_to(root)} = {b[0].relative_to(root)}"
            warnings.warn(f"{len(found)} image(s) under {root} are byte-identical copies in more than one of its "
                          f"{what} ({why}), e.g. {first}; remove the copies", stacklevel=4)


def _names_and_sizes(files) -> str:
    """A fingerprint of fixed-name archive files: names, byte sizes, modification times and inodes."""
    stats = [(f.name, os.stat(f)) for f in files]
    return hashlib.sha1("|".join(f"{n}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}" for n, st in stats)
                        .encode()).hexdigest()[:16]


@dataclass
class FashionSource:
    """Fashion-MNIST from idx files; kept at 28x28 grey, resized per batch (so 70,000 images stay small)."""

    folder: Path
    origin: str = "official"
    native: int = 28

    @property
    def fingerprint(self) -> str:
        return _names_and_sizes(self._paths())

    def _paths(self):
        return [next(p for p in (self.folder / n, self.folder / f"{n}.gz") if p.exists()) for n in FASHION_FILES]

    def read(self, resolution: int):
        raw = []
        for p in self._paths():
            data = (gzip.open if p.suffix == ".gz" else open)(p, "rb").read()
            ndim = data[3]
            shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
            raw.append(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape))
        images = torch.from_numpy(np.concatenate([raw[0], raw[2]]))[:, None].contiguous()
        labels = torch.from_numpy(np.concatenate([raw[1], raw[3]]).astype(np.int64))
        role = np.array(["train"] * len(raw[1]) + ["test"] * len(raw[3]))
        return images, labels, list(FASHION_CLASSES), role


@dataclass
class Cifar10Source:
    """CIFAR-10 from the official python archive's pickled batches; kept at 32x32, resized per batch."""

    folder: Path  # the ``cifar-10-batches-py`` folder
    origin: str = "official"
    native: int = 32

    @property
    def fingerprint(self) -> str:
        return _names_and_sizes(self._paths())

    def _paths(self):
        return [self.folder / f"data_batch_{i}" for i in range(1, 6)] + [self.folder / "test_batch"]

    def read(self, resolution: int):
        import pickle

        images, labels, role = [], [], []
        for p in self._paths():
            with open(p, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32))
            labels += list(batch["labels"])
            role += ["test" if p.name == "test_batch" else "train"] * len(batch["labels"])
        return (torch.from_numpy(np.concatenate(images)).contiguous(), torch.tensor(labels, dtype=torch.int64),
                list(CIFAR10_CLASSES), np.array(role))


def _first(candidates, ok):
    for c in candidates:
        if ok(c):
            return c
    return None


def _missing(name: str, looked: list, how: str) -> FtlibError:
    return FtlibError(f"dataset {name!r} not found; looked in: {', '.join(map(str, looked))}; to get it: {how}")


def locate(name: str):
    """Find a dataset's files: ``data/``, then mirrors, then the official download."""
    roots = [data_root(), *mirrors()]
    if name == "hymenoptera":
        looked = [r / "hymenoptera_data" for r in roots]
        found = _first(looked, lambda p: (p / "train").is_dir() and (p / "val").is_dir())
        if found is None:
            found = _download_hymenoptera(looked)
        return FolderSource(found, {"train": "train", "val": "test"})  # the tutorial's val/ is our test
    if name == "caltech101":
        looked = [r / "caltech101" / "101_ObjectCategories" for r in roots]
        found = _first(looked, Path.is_dir)
        if found is None:
            found = _download_caltech(looked)
        return FolderSource(found, {"": ""}, skip_classes=("BACKGROUND_Google",))
    if name == "fashion_mnist":
        looked = [data_root() / "fashion_mnist", FASHION_SYSTEM, *(m / "fashion-mnist" for m in mirrors()),
                  data_root() / "FashionMNIST" / "raw"]
        ok = lambda p: all((p / n).exists() or (p / f"{n}.gz").exists() for n in FASHION_FILES)  # noqa: E731
        found = _first(looked, ok)
        if found is None:
            found = _download_fashion(looked)
        return FashionSource(found)
    if name == "cifar10":
        return _cifar10(roots)
    return _imagefolder(str(folder_path(name)))


def folder_path(name: str) -> Path:
    """The absolute folder of ``imagefolder:<path>`` (``~`` expanded; relative to the working directory).

    Example:
        >>> str(folder_path("imagefolder:/data/photos"))
        '/data/photos'
    """
    path = str(name).partition(":")[2]
    if not path.strip():
        raise FtlibError("imagefolder: needs a folder after the colon, e.g. imagefolder:/path/to/photos "
                         "(an empty path would read the working directory)")
    try:
        return Path(os.path.abspath(Path(path).expanduser()))
    except RuntimeError as e:  # ~nosuchuser/...
        raise FtlibError(f"cannot expand {path!r} ({e}); give the folder's full path") from None


def folder_identity(name: str) -> dict:
    """What identifies ``imagefolder:<path>`` data in a run key: its absolute folder and its fingerprint.

    Empty for built-in datasets (their run keys are their names). Memoised per process while none of the
    folder's directories changes, so keying many runs on a large folder stays cheap.
    """
    if not str(name).startswith("imagefolder:"):
        return {}
    root = folder_path(name)
    stamp = _stamp(root)
    memo = _IDENTITY.get(root)
    if memo is None or memo[0] != stamp:
        memo = (stamp, _imagefolder(str(root)).fingerprint)
        _IDENTITY[root] = memo
    return {"folder": str(root), "folder_fingerprint": memo[1]}


def check_outside(out, datasets) -> None:
    """Refuse a results folder inside an ``imagefolder:`` dataset: its plots would be read as a class of images."""
    where = Path(os.path.abspath(Path(out).expanduser()))
    for name in datasets:
        if str(name).startswith("imagefolder:"):
            root = folder_path(name)
            if where == root or root in where.parents:
                raise FtlibError(f"--out {where} is inside the image folder {root}: its plots and tables would be "
                                 "read as images on the next run; choose a results folder outside it")


def _stamp(root: Path) -> tuple:
    """Every visible folder under ``root`` with its modification time: adding, removing or renaming a file shows."""
    out, seen = [], set()
    for top, dirs, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        dirs[:] = [] if real in seen else sorted(d for d in dirs if not d.startswith("."))
        seen.add(real)
        try:
            out.append((top, os.stat(top).st_mtime_ns))
        except OSError:
            out.append((top, None))
    return tuple(out)


def _imagefolder(path: str) -> FolderSource:
    """A user's folder: ``<class>/<image>``, or split folders ``train/`` and ``val/`` (or ``valid/``) and ``test/``.

    The val rule: without ``test/``, ``val/`` is the test split (the PyTorch tutorial's layout, read
    exactly as the built-in ``hymenoptera``); with ``test/``, ``val/`` is the val split, read only when a
    run asks for one (``val_per_class``). No image ever moves from its folder's role to another.
    """
    root = folder_path(f"imagefolder:{path}")
    if not root.is_dir():
        raise FtlibError(f"image folder {str(root)!r} does not exist; expected <folder>/<class>/<image> "
                         f"or <folder>/{{train,val,test}}/<class>/<image>")
    tops = [p.name for p in _subfolders(root)]
    splits = [t for t in tops if t in SPLIT_FOLDERS]
    if not splits:
        return FolderSource(root, {"": ""})
    others = [t for t in tops if t not in SPLIT_FOLDERS]
    if others or "train" not in splits:
        what = (f"also holds {', '.join(others[:5])}" + (" ..." if len(others) > 5 else "")) if others \
            else "has no train/"
        raise FtlibError(f"image folder {root} has split folder(s) {', '.join(s + '/' for s in splits)} but {what}: "
                         "either every class is a sub-folder of it (then rename a class folder called "
                         f"{' or '.join(repr(s) for s in splits)}), or train/ (plus val/ or valid/, and test/) "
                         "each hold one sub-folder per class")
    if "val" in splits and "valid" in splits:
        raise FtlibError(f"image folder {root} has both val/ and valid/; keep one of them (they mean the same split)")
    roles = {s: SPLIT_FOLDERS[s] for s in splits}
    if "test" not in splits:  # the tutorial's layout: its val/ is the held-out test split
        roles = {s: "test" if r == "val" else r for s, r in roles.items()}
    return FolderSource(root, roles)


def _cifar10(roots):
    """The official arrays in ``data/`` first, then the JPEG mirror, then torchvision's download.

    The mirror (``cifar10-jpeg/{train,test}/<class>/*.jpg``) is a JPEG re-encoding of the official
    arrays with 1,000 training images per class: close, not identical, so every run records
    which of the two it read (``data_source``: ``official`` or ``jpeg-mirror``).
    """
    official = [r / "cifar10" / CIFAR10_BATCHES for r in roots[:1]]
    found = _first(official, lambda p: (p / "test_batch").exists())
    if found is not None:
        return Cifar10Source(found)
    jpeg = [r / "cifar10-jpeg" for r in roots]
    found = _first(jpeg, lambda p: (p / "train").is_dir() and (p / "test").is_dir())
    if found is not None:  # native 32 px: stored as is, resized per batch like Fashion-MNIST
        return FolderSource(found, {"train": "train", "test": "test"}, origin="jpeg-mirror", native=32)
    dest = roots[0] / "cifar10"
    try:
        import torchvision

        torchvision.datasets.CIFAR10(root=str(dest), download=True)
    except Exception as e:
        raise _missing("cifar10", official + jpeg, f"torchvision.datasets.CIFAR10(root={str(dest)!r}, "
                                                  f"download=True) while online ({type(e).__name__})") from e
    return Cifar10Source(dest / CIFAR10_BATCHES)


def _download_hymenoptera(looked):
    dest = data_root()
    try:
        zpath = dest / "hymenoptera_data.zip"
        urllib.request.urlretrieve(HYMENOPTERA_URL, zpath)
        with zipfile.ZipFile(zpath) as z:
            z.extractall(dest)
        zpath.unlink()
    except Exception as e:
        raise _missing("hymenoptera", looked, f"download {HYMENOPTERA_URL} and unzip it into {dest} ({e})") from e
    return dest / "hymenoptera_data"


def _download_caltech(looked):
    import torchvision

    try:
        torchvision.datasets.Caltech101(root=str(data_root()), target_type="category", download=True)
    except Exception as e:
        raise _missing("caltech101", looked, f"torchvision.datasets.Caltech101(root={str(data_root())!r}, "
                                             f"download=True) while online ({type(e).__name__})") from e
    return data_root() / "caltech101" / "101_ObjectCategories"


def _download_fashion(looked):
    import torchvision

    try:
        torchvision.datasets.FashionMNIST(root=str(data_root()), download=True)
    except Exception as e:
        raise _missing("fashion_mnist", looked, "apt-get install dataset-fashion-mnist (Debian), or run once "
                                                f"online to download into {data_root()} ({type(e).__name__})") from e
    raw = data_root() / "FashionMNIST" / "raw"
    for f in raw.glob("*.gz"):
        if not f.with_suffix("").exists():
            with gzip.open(f) as src, open(f.with_suffix(""), "wb") as dst:
                shutil.copyfileobj(src, dst)
    return raw
