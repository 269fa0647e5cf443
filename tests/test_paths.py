"""Where data goes: a clone's data/ inside a clone, the user's cache dir when ftlib is installed elsewhere."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ftlib
from ftlib import paths
from ftlib.errors import FtlibError

CLONE = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("FTLIB_DATA", "FTLIB_DATA_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_a_clone_is_recognised_by_its_pyproject(tmp_path):
    assert paths._clone_root(CLONE) == CLONE
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert paths._clone_root(tmp_path) is None
    assert paths._clone_root(tmp_path / "missing") is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "ftlib"\nversion = "0.2.0"\n')
    assert paths._clone_root(tmp_path) == tmp_path


def test_inside_a_clone_data_goes_to_its_data_folder(clean_env, monkeypatch):
    monkeypatch.setattr(paths, "CLONE_ROOT", CLONE)
    assert paths.data_root() == CLONE / "data"
    monkeypatch.setenv("FTLIB_DATA", "")  # empty means unset
    assert paths.data_root() == CLONE / "data"
    monkeypatch.setenv("FTLIB_DATA", str(clean_env / "mine"))
    assert paths.data_root() == clean_env / "mine" and (clean_env / "mine").is_dir()


def test_outside_a_clone_data_goes_to_the_user_cache_and_no_mirror_is_guessed(clean_env, monkeypatch):
    monkeypatch.setattr(paths, "CLONE_ROOT", None)
    assert paths.data_root() == clean_env / "xdg" / "ftlib"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty means unset: ~/.cache
    assert paths.user_cache() == Path.home() / ".cache" / "ftlib"
    assert paths.mirrors() == []
    monkeypatch.setenv("FTLIB_DATA_MIRROR", os.pathsep.join([str(clean_env / "m1"), "", str(clean_env / "m2")]))
    assert paths.mirrors() == [clean_env / "m1", clean_env / "m2"]


def test_installed_copy_imported_from_outside_a_clone_uses_the_user_cache(tmp_path):
    """A real, non-editable install into a folder of its own, imported with the clone nowhere on the path."""
    target, src = tmp_path / "inst", tmp_path / "src"  # built from a copy: the build leaves nothing in the clone
    shutil.copytree(CLONE / "ftlib", src / "ftlib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(CLONE / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "--target", str(target), str(src)],
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PIP_NO_CACHE_DIR": "1"}, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    assert (target / "ftlib" / "paths.py").is_file() and not (target / "pyproject.toml").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("FTLIB_DATA", "FTLIB_DATA_MIRROR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), XDG_CACHE_HOME=str(tmp_path / "xdg"), FTLIB_DATA="")
    code = ("import ftlib, ftlib.paths as p, ftlib.bench as b; "
            "print(ftlib.__file__); print(p.CLONE_ROOT); print(p.data_root()); print(p.mirrors()); "
            "print(b.default_store('cpu')); print(ftlib.__version__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, clone, root, mirrors, store, installed = proc.stdout.strip().splitlines()[-6:]
    assert Path(where).is_relative_to(target)  # the installed copy, not the clone's editable one
    assert clone == "None" and mirrors == "[]"
    assert Path(root) == tmp_path / "xdg" / "ftlib" and Path(root).is_dir()
    assert Path(store).is_relative_to(tmp_path / "xdg" / "ftlib")
    assert not (target / "data").exists()
    # the version, outside a clone from the package metadata, is the clone's pyproject.toml's
    assert installed == ftlib.__version__ == _pyproject_version()


def _pyproject_version() -> str:
    import tomllib

    return tomllib.loads((CLONE / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_in_a_clone_the_version_is_its_pyproject_even_beside_stale_metadata(tmp_path):
    """An old egg-info (version 0.0.1) on the path must not hide the clone's pyproject.toml."""
    stale = tmp_path / "ftlib.egg-info"
    stale.mkdir()
    (stale / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: ftlib\nVersion: 0.0.1\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{CLONE}"}
    proc = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, ftlib; "
                           "print(m.version('ftlib')); print(ftlib.__version__)"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metadata, ours = proc.stdout.split()[-2:]
    assert metadata == "0.0.1" and ours == _pyproject_version()


def test_empty_ftlib_data_means_unset(monkeypatch):
    monkeypatch.setenv("FTLIB_DATA", "")
    monkeypatch.setattr(paths, "writable_dir", lambda p, hint: p)
    assert paths.data_root() != paths.Path("")
    assert paths.data_root().is_absolute()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_cache_names_the_folder_and_the_variable(monkeypatch, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("FTLIB_DATA", str(ro))
    with pytest.raises(FtlibError, match=rf"{ro}.*FTLIB_DATA"):
        paths.data_root()


def test_an_impossible_cache_names_the_folder_and_the_variable(monkeypatch):
    monkeypatch.setenv("FTLIB_DATA", "/proc/ftlib-cache")
    with pytest.raises(FtlibError, match=r"cannot create folder /proc/ftlib-cache .*FTLIB_DATA"):
        paths.data_root()
