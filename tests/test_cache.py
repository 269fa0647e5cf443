"""Cache files are verified when read: a damaged one is named, discarded and rebuilt, never trusted."""
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from ftlib import cache, datasets, paths, probe, weights
from ftlib.errors import FtlibError
from ftlib.cache import atomic_save, clean_stale_tmp, verified_load


def _zero_middle(path, n=64, fill=0):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid: mid + n] = bytes([fill]) * n
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("FTLIB_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_verified_load_round_trips_and_rejects_changed_bytes(tmp_path):
    obj = {"images": torch.arange(10_000, dtype=torch.uint8).reshape(100, 100), "role": ["train", "test"],
           "rows": [{"C": 0.1, "val_acc": 0.5}]}
    path = tmp_path / "x.pt"
    atomic_save(obj, path)
    back = verified_load(path)
    assert torch.equal(back["images"], obj["images"]) and back["role"] == ["train", "test"]
    assert back["rows"] == obj["rows"]
    for damage in (_zero_middle, _truncate):
        atomic_save(obj, path)
        damage(path)
        with pytest.warns(UserWarning, match=rf"cache file {path}.* damaged.*rebuilding"):
            assert verified_load(path) is None
        assert not path.exists()  # discarded


def test_zeroed_tensor_bytes_that_still_unpickle_are_caught_by_the_checksum(tmp_path):
    path = tmp_path / "feats.pt"
    atomic_save({"feats": torch.ones(1000)}, path)
    blob = torch.load(path, weights_only=True)
    blob["payload"]["feats"][10:20] = 0  # a valid torch file with other numbers in it
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="checksum mismatch"):
        assert verified_load(path, weights_only=True) is None


def test_a_file_without_a_checksum_is_not_trusted(tmp_path):
    torch.save({"feats": torch.ones(3)}, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="no checksum"):
        assert verified_load(tmp_path / "old.pt", weights_only=True) is None


def test_a_damaged_decoded_dataset_is_rebuilt(cache_root, tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    name = f"imagefolder:{tmp_path / 'imgs'}"
    first = datasets.decode(name, 16)
    datasets.clear_memory()
    (cached,) = (cache_root / "cache").glob("*.pt")
    _zero_middle(cached, 256, fill=0x5A)  # not zeros: the middle may be an all-black image already
    with pytest.warns(UserWarning, match=rf"cache file {cached}.*damaged"):
        again = datasets.decode(name, 16)
    datasets.clear_memory()
    assert torch.equal(again.images, first.images) and cached.exists()  # rebuilt and stored again
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file is trusted again
        assert torch.equal(datasets.decode(name, 16).images, first.images)
    datasets.clear_memory()


def test_a_damaged_probe_memo_is_refit(cache_root):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), np.repeat([0, 1], 10)
    w, b = probe.fit_logistic(x, y, x, y, (1.0,), 2)[:2]  # weight, bias first
    (memo,) = (cache_root / "cache" / "probes").glob("*.pt")
    _truncate(memo)
    with pytest.warns(UserWarning, match="damaged"):
        w2, b2 = probe.fit_logistic(x, y, x, y, (1.0,), 2)[:2]
    assert torch.equal(w, w2) and torch.equal(b, b2)


def test_damaged_converted_weights_are_converted_again(cache_root):
    from ftlib.backbones import load_backbone

    try:
        weights.packaged_file("tf_efficientnet_lite0")
    except FtlibError:
        pytest.skip("offline weight package not installed")
    bb = load_backbone("timm/tf_efficientnet_lite0", num_classes=2, pretrained=True)
    cached = cache_root / "weights" / "tf_efficientnet_lite0.pth"
    _zero_middle(cached, 4096)
    with pytest.warns(UserWarning, match=rf"{cached}.*damaged"):
        again = load_backbone("timm/tf_efficientnet_lite0", num_classes=2, pretrained=True)
    ref = {k: v for k, v in bb.model.state_dict().items() if not k.startswith(bb.head_name)}
    for k, v in ref.items():
        assert torch.equal(again.model.state_dict()[k], v), k


def test_stale_tmp_files_of_dead_writers_are_cleaned_when_a_cache_folder_is_first_used(cache_root, monkeypatch):
    folder = cache_root / "cache"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = folder / f".x.pt.{dead.pid}.abc123.tmp"
    live = folder / f".y.pt.{os.getpid()}.def456.tmp"  # this process is writing it
    old = folder / ".results-zz.csv.tmp"  # no pid in its name: judged by age
    for f in (orphan, live, old):
        f.write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * cache.STALE_TMP_SECONDS,) * 2)
    monkeypatch.setattr(paths, "_CLEANED", set())
    assert paths.cache_dir("cache") == folder
    assert not orphan.exists() and not old.exists() and live.exists()
    assert clean_stale_tmp(folder) == []


def test_a_full_disk_names_the_file_and_what_to_change(tmp_path, monkeypatch):
    real = cache._Writer.write

    def full(self, data):  # what /dev/full does: every write fails with ENOSPC
        try:
            with open("/dev/full", "wb") as f:
                f.write(data)
                f.flush()
        except OSError as e:
            self.error = e
            raise
        return real(self, data)

    monkeypatch.setattr(cache._Writer, "write", full)
    with pytest.raises(FtlibError, match=r"cannot write .*x\.pt \(No space left on device\).*FTLIB_DATA"):
        atomic_save({"w": torch.zeros(100_000)}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_summary_md_is_written_even_when_a_plot_cannot_be(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from helpers import records

    from ftlib import page
    from ftlib.store import ResultStore

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    store = ResultStore(tmp_path)
    for r in records():  # the report tests' toy runs
        store.add(r)
    monkeypatch.setattr(page, "plot_acc_vs_time", broken)
    with pytest.warns(UserWarning, match=r"acc_vs_time\.png .*summary\.md is written without it"):
        paths = page.write_summary(tmp_path)
    assert paths["summary"].exists() and "acc_vs_time" not in paths
    md = paths["summary"].read_text()
    assert "acc_vs_time.png" not in md and "acc_vs_shots.png" in md
