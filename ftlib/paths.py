"""Where ftlib reads and writes: the cache root and the offline mirrors it looks in first (the files' format: ``ftlib.cache``).

Inside a clone (the package sits beside a ``pyproject.toml`` naming ``ftlib``) the cache is the
clone's ``data/`` folder and ``<clone>/../shared/datasets`` is an offline mirror; installed anywhere
else it is ``$XDG_CACHE_HOME/ftlib`` (``~/.cache/ftlib``). ``$FTLIB_DATA`` overrides both and
``$FTLIB_DATA_MIRROR`` adds mirrors; an empty variable counts as unset.
"""
from __future__ import annotations

import os
from pathlib import Path

from .cache import clean_stale_tmp
from .errors import FtlibError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _clone_root(root: Path = REPO_ROOT) -> Path | None:
    """``root`` when it is a source checkout of ftlib (its ``pyproject.toml`` names the project), else None."""
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if any(line.replace(" ", "") == 'name="ftlib"' for line in text.splitlines()) else None


CLONE_ROOT = _clone_root()  # None when ftlib is imported from an installed copy (site-packages, a wheel)
_CLEANED: set = set()


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
    return writable_dir(root, "set FTLIB_DATA to a writable folder")


def cache_dir(*parts: str) -> Path:
    """A sub-folder of the cache root, created on demand (``cache_dir("weights")``)."""
    d = writable_dir(data_root().joinpath(*parts), "set FTLIB_DATA to a writable folder")
    if d not in _CLEANED:  # once per folder and process: drop what killed writers left behind
        _CLEANED.add(d)
        clean_stale_tmp(d)
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


def writable_dir(path, hint: str) -> Path:
    """Create ``path`` if needed and check that files can be written into it; else say which setting to change.

    >>> writable_dir("/proc/ftlib", "set FTLIB_DATA to a writable folder")  # doctest: +SKIP
    FtlibError: cannot create folder /proc/ftlib (No such file or directory); set FTLIB_DATA to a writable folder
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FtlibError(f"cannot create folder {path} ({e.strerror or e}); {hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FtlibError(f"folder {path} is not writable; {hint}")
    return path
