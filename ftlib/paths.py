"""Where ftlib reads and writes: the cache root and the offline mirrors it looks in first.

Inside a clone (the package sits beside a ``pyproject.toml`` naming ``ftlib``) the cache is the
clone's ``data/`` folder and ``<clone>/../shared/datasets`` is an offline mirror; installed anywhere
else it is ``$XDG_CACHE_HOME/ftlib`` (``~/.cache/ftlib``). ``$FTLIB_DATA`` overrides both and
``$FTLIB_DATA_MIRROR`` adds mirrors; an empty variable counts as unset.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _clone_root(root: Path = REPO_ROOT) -> Path | None:
    """``root`` when it is a source checkout of ftlib (its ``pyproject.toml`` names the project), else None."""
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if any(line.replace(" ", "") == 'name="ftlib"' for line in text.splitlines()) else None


CLONE_ROOT = _clone_root()  # None when ftlib is imported from an installed copy (site-packages, a wheel)


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/ftlib``, or ``~/.cache/ftlib`` when that is unset or empty."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftlib"


def data_root() -> Path:
    """The cache root: ``$FTLIB_DATA`` if set, else ``<clone>/data`` inside a clone, else ``user_cache()``.

    Example:
        >>> data_root()  # doctest: +SKIP
        PosixPath('/home/me/ftlib/data')
    """
    default = CLONE_ROOT / "data" if CLONE_ROOT else user_cache()
    root = Path(os.environ.get("FTLIB_DATA") or default)  # FTLIB_DATA="" means unset
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache root, created on demand (``cache_dir("weights")``)."""
    d = data_root().joinpath(*parts)
    d.mkdir(parents=True, exist_ok=True)
    return d


def mirrors() -> list[Path]:
    """Offline dataset mirrors to look in before downloading, in order.

    ``$FTLIB_DATA_MIRROR`` (``os.pathsep``-separated) first, then, inside a clone only,
    ``<clone>/../shared/datasets`` when it exists. An installed ftlib looks nowhere unconfigured.
    """
    found = [Path(p) for p in os.environ.get("FTLIB_DATA_MIRROR", "").split(os.pathsep) if p]
    shared = CLONE_ROOT.parent / "shared" / "datasets" if CLONE_ROOT else None
    if shared is not None and shared.is_dir():
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
