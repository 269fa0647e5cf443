"""Where ftlib reads and writes: the ``data/`` cache root and the offline mirrors it looks in first."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The cache root: ``$FTLIB_DATA`` if set, else ``<repo>/data``."""
    root = Path(os.environ.get("FTLIB_DATA", REPO_ROOT / "data"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache root, created on demand (``cache_dir("weights")``)."""
    d = data_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


def mirrors() -> list[Path]:
    """Offline dataset mirrors to look in before downloading, in order.

    ``$FTLIB_DATA_MIRROR`` (``os.pathsep``-separated) first, then ``../shared/datasets``
    beside the repository when it exists.
    """
    found = [Path(p) for p in os.environ.get("FTLIB_DATA_MIRROR", "").split(os.pathsep) if p]
    shared = REPO_ROOT.parent / "shared" / "datasets"
    if shared.is_dir():
        found.append(shared)
    return found


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a unique temporary file beside ``path``, then rename it into place.

    Readers see the old file or the new one, never half of one, and two processes writing the
    same cache entry at once (``bench --jobs``) each rename a complete file of their own.
    """
    import torch

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
