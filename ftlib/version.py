"""ftlib's version, read from one place: ``pyproject.toml``'s ``[project] version``.

Installed (editable or not), the package metadata carries it; imported from a clone that was never
installed, it is read from the clone's ``pyproject.toml``.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _from_pyproject() -> str:
    path = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        import tomllib

        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    except (OSError, ImportError, ValueError):
        return "0+unknown"
    return project.get("version", "0+unknown") if project.get("name") == "ftlib" else "0+unknown"


try:
    __version__ = version("ftlib")
except PackageNotFoundError:
    __version__ = _from_pyproject()
