"""ftlib's version, read from one place: ``pyproject.toml``'s ``[project] version``.

Imported from a clone, the clone's ``pyproject.toml`` is read directly (installed metadata, such as
an ``ftlib.egg-info`` left by an older ``pip install -e``, can lag behind it); installed anywhere else,
the package metadata written from that same file carries it.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

UNKNOWN = "0+unknown"


def _from_pyproject(root: Path = Path(__file__).resolve().parent.parent) -> str:
    """The version in ``root/pyproject.toml`` when that file describes ftlib, else ``UNKNOWN``."""
    try:
        import tomllib

        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, ImportError, ValueError):
        return UNKNOWN
    return project.get("version", UNKNOWN) if project.get("name") == "ftlib" else UNKNOWN


def _version() -> str:
    in_clone = _from_pyproject()
    if in_clone != UNKNOWN:
        return in_clone
    try:
        return version("ftlib")
    except PackageNotFoundError:
        return UNKNOWN


__version__ = _version()
