"""Conventions users of other libraries expect: --version, help, file modes, __all__, offline failures, the licence,
where load_or_run writes by default, and ./run importing the calling clone's code."""
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch

import ftlib
from ftlib.cache import atomic_save, default_file_mode
from ftlib.store import ResultStore
from helpers import records

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ftlib", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


def test_version_and_the_program_name():
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"ftlib {ftlib.__version__}"
    res = cli("--help")
    assert res.stdout.startswith("usage: ftlib ") and all(c in res.stdout for c in ("train", "predict", "bench"))


def test_bench_help_has_a_description_and_examples():
    out = cli("bench", "--help").stdout
    assert "resumable results store" in out and "examples:" in out and "ftlib bench --profile smoke" in out
    assert "--passes" in out and "--epochs" not in out


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_are_written_readable_as_the_umask_allows(tmp_path, umask_022, lite0_random):
    model = ftlib.save_finetuned(tmp_path / "model.pt", lite0_random, ["a", "b"], 32)
    cache = tmp_path / "cache.pt"
    atomic_save({"w": torch.zeros(2)}, cache)
    store = ResultStore(tmp_path / "store")
    store.add(records()[0])
    assert default_file_mode() == 0o644
    assert mode(model) == mode(cache) == mode(store.csv_path) == 0o644
    os.umask(0o077)  # a private umask keeps them private
    atomic_save({"w": torch.zeros(2)}, cache)
    assert mode(cache) == 0o600


def test_help_ftlib_lists_the_api():
    assert set(ftlib.__all__) >= {"run", "RunConfig", "train_model", "predict", "predict_files", "load_finetuned",
                                  "save_finetuned", "load_dataset", "load_backbone", "fit", "load_or_run"}
    assert all(hasattr(ftlib, name) for name in ftlib.__all__)
    import pydoc

    text = pydoc.render_doc(ftlib, renderer=pydoc.plaintext)
    assert "train_model(" in text and "load_finetuned(" in text


def test_load_or_run_without_out_writes_outside_the_committed_results():
    from ftlib.bench import default_store

    for profile in ("cpu", "smoke"):
        assert not default_store(profile).resolve().is_relative_to(ROOT / "results")


def test_an_offline_hub_fails_within_seconds_naming_the_offline_backbones(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "https://hub.invalid"}  # never resolves
    env.pop("HF_HUB_OFFLINE", None)
    code = ("import ftlib\ntry:\n    ftlib.load_backbone('timm/resnet18', num_classes=2)\n"
            "except ftlib.FtlibError as e:\n    print(e)\n")
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    seconds = time.perf_counter() - start
    assert "could not fetch pretrained weights for timm/resnet18" in res.stdout, res.stderr[-2000:]
    assert "timm/tf_efficientnet_lite0" in res.stdout and "not reachable" in res.stdout
    assert seconds < 30  # python + torch + timm import, then a 1 s connect: not minutes of retries


def test_the_licence_and_python_requirement():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    # ftlib.version reads pyproject.toml with tomllib, new in 3.11
    assert meta["requires-python"] == ">=3.11" and sys.version_info >= (3, 11)


def test_run_imports_the_calling_clones_code(tmp_path):
    other = tmp_path / "clone"
    other.mkdir()
    for name in ("run", "requirements.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, other / name)
    shutil.copytree(ROOT / "ftlib", other / "ftlib", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import ftlib; print(ftlib.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    theirs = subprocess.run([str(other / "run"), "python", "-c", code], capture_output=True, text=True, env=env,
                            timeout=300)
    ours = subprocess.run([str(ROOT / "run"), "python", "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert Path(theirs.stdout.strip()).is_relative_to(other), theirs.stderr[-2000:]
    assert Path(ours.stdout.strip()).is_relative_to(ROOT), ours.stderr[-2000:]
    script = subprocess.run([str(other / "run"), "ftlib", "--version"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert script.returncode == 0 and script.stdout.strip() == f"ftlib {ftlib.__version__}"
    assert "pip install -e" not in (ROOT / "run").read_text()
