"""ftlib's version, read from one place: ``pyproject.toml``'s ``[project] version``.

Imported from a clone (``paths.CLONE_ROOT``), the clone's ``pyproject.toml`` is read directly
(installed metadata, such as an ``ftlib.egg-info`` left by an older ``pip install -e``, can lag
behind it); installed anywhere else, the package metadata written from that same file carries it.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .paths import CLONE_ROOT

UNKNOWN = "0+unknown"


def _version() -> str:
    if CLONE_ROOT is not None:
        try:
            import tomllib

            text = (CLONE_ROOT / "pyproject.toml").read_text(encoding="utf-8")
            return tomllib.loads(text)["project"]["version"]
        except (OSError, ImportError, ValueError, KeyError):
            return UNKNOWN
    try:
        return version("ftlib")
    except PackageNotFoundError:
        return UNKNOWN


__version__ = _version()
