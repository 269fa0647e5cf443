"""Results always describe the data they came from: content-keyed folder runs, a store that survives a bad
line, caches that notice edits and run no planted code, folders read as users lay them out, safe inputs."""
import math
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import ftlib
from ftlib import datasets, probe, sources
from ftlib.errors import FtlibError
from ftlib.store import ResultStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cache_root(monkeypatch, tmp_path):
    """Caches of throw-away folders go to a temporary data root, never the repository's data/."""
    monkeypatch.setenv("FTLIB_DATA", str(tmp_path / "data"))
    datasets.clear_memory()
    yield tmp_path / "data"
    datasets.clear_memory()


def _image(path, rgb, size=(20, 24), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, fmt)


def _folder(root, classes=("a", "b"), n=6):
    for c in classes:
        for i in range(n):
            _image(root / c / f"{i}.png", (ord(c[0]) % 7 * 30, 10 * i, len(c) * 20))
    return f"imagefolder:{root}"


def _record(i, **kw):
    return {"run_id": f"r{i}", "dataset": "toy", "strategy": "full", "strategy_label": "full", "shots": 5,
            "seed": i, "profile": "smoke", "status": "ok", "test_acc": 0.5 + i / 100, "curves": {"loss": [1.0]},
            **kw}


# ---------------------------------------------------------------- 1. runs keyed on the folder's content

def test_a_folder_run_is_keyed_on_its_content_and_absolute_path(cache_root, tmp_path, monkeypatch):
    name = _folder(tmp_path / "photos")
    before = ftlib.RunConfig(name, strategy="linear_probe", shots=2)
    assert before.key()["folder"] == str(tmp_path / "photos")
    _image(tmp_path / "photos" / "c" / "0.png", (0, 255, 0))  # a class added
    after = ftlib.RunConfig(name, strategy="linear_probe", shots=2)
    assert after.run_id() != before.run_id()
    # the same relative path from two working directories names two folders
    _folder(tmp_path / "elsewhere" / "photos")
    monkeypatch.chdir(tmp_path)
    here = ftlib.RunConfig("imagefolder:photos").run_id()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert ftlib.RunConfig("imagefolder:photos").run_id() != here
    # built-in datasets keep their name-only keys
    assert "folder" not in ftlib.RunConfig("hymenoptera").key()


def test_an_empty_folder_path_and_out_inside_the_folder_are_refused(cache_root, tmp_path):
    from ftlib.bench import bench, grid

    with pytest.raises(FtlibError, match="needs a folder"):
        ftlib.load_dataset("imagefolder:")
    name = _folder(tmp_path / "photos")
    configs = grid("smoke", datasets=[name], strategies=["linear_probe"], shots=[2], seeds=[0], resolution=32)
    with pytest.raises(FtlibError, match="inside the image folder"):
        bench(configs, tmp_path / "photos" / "results", log=lambda *a: None)
    assert not (tmp_path / "photos" / "results").exists()


def test_a_changed_folder_is_trained_anew_and_its_old_rows_leave_the_tables(cache_root, tmp_path):
    from ftlib.bench import bench, grid

    name = _folder(tmp_path / "photos")
    out, lines = tmp_path / "out", []

    def configs():
        return grid("smoke", datasets=[name], strategies=["linear_probe"], shots=[2], seeds=[0], resolution=32)

    bench(configs(), out, progress=False, log=lines.append)
    _folder(tmp_path / "photos", classes=("c",))  # a third class
    lines.clear()
    store = bench(configs(), out, progress=False, log=lines.append)
    assert any("1 stored runs were trained on other files" in line for line in lines), lines
    assert any("0 already in" in line and "1 to run" in line for line in lines), lines
    df = store.frame()
    assert len(df) == 1 and int(df.num_classes.iloc[0]) == 3
    with open(out / "results.csv") as f:
        assert sum(",stale," in line for line in f) == 1  # kept for the record


# ---------------------------------------------------------------- 2. a store that survives a bad line

def test_a_cut_row_is_skipped_named_and_retrained(tmp_path):
    store = ResultStore(tmp_path)
    store.add(_record(1))
    store.add(_record(2))
    text = (tmp_path / "results.csv").read_text()
    (tmp_path / "results.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 12])  # r2 cut mid-line
    with pytest.warns(UserWarning, match=r"skipped 1 malformed row.*line 3"):
        assert store.done_ids() == {"r1"}
    with pytest.warns(UserWarning):
        assert store.add(_record(2)) is True  # retrained and stored
        assert store.done_ids() == {"r1", "r2"}
    assert (tmp_path / "results.skipped.csv").read_text().startswith("r2,")


def test_a_row_with_extra_fields_never_stops_later_runs_from_being_saved(tmp_path):
    store = ResultStore(tmp_path)
    store.add(_record(1))
    with open(tmp_path / "results.csv", "a") as f:
        f.write("r9,toy,full,full,5,9,smoke,ok,0.5,extra,fields\n")
    with pytest.warns(UserWarning, match="fields, the header has"):
        assert store.add(_record(2)) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bad line was moved aside: the store reads cleanly again
        assert store.done_ids() == {"r1", "r2"} and len(store.frame()) == 2


def test_encoding_and_layout_problems_are_one_error_naming_the_file(tmp_path):
    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "results.csv").write_bytes("run_id,dataset,shots,seed,strategy_label,status\n"
                                        "r1,caf\xe9,5,0,full,ok\n".encode("latin-1"))
    with pytest.raises(FtlibError, match=r"results\.csv is not UTF-8.*iconv"):
        ResultStore(latin).done_ids()
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "results.csv").write_text("run_id,dataset,shots,seed,status,test_acc\nr1,toy,5,0,ok,0.5\n")
    with pytest.raises(FtlibError, match=r"results\.csv lacks the column\(s\) strategy_label"):
        ResultStore(bare).frame()
    store = ResultStore(tmp_path / "side")
    store.add(_record(1))
    with open(tmp_path / "side" / "runs.jsonl", "ab") as f:
        f.write(b'{"run_id": "r1", "curves": {"caf\xe9": [1]}}\n')  # not UTF-8
    assert store.sidecar()["r1"]["curves"] == {"loss": [1.0]}


# ---------------------------------------------------------------- 3. caches notice content changes

def test_a_bmp_re_saved_in_place_at_the_same_size_is_decoded_again(cache_root, tmp_path):
    root = tmp_path / "bmps"
    for c, rgb in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
        for i in range(5):
            _image(root / c / f"{i}.bmp", rgb, size=(16, 16))
    name = f"imagefolder:{root}"
    first = ftlib.load_dataset(name, resolution=16)
    edited = root / "a" / "0.bmp"
    size = edited.stat().st_size
    time.sleep(0.05)
    _image(edited, (0, 250, 0), size=(16, 16), fmt="BMP")
    assert edited.stat().st_size == size
    datasets.clear_memory()
    again = ftlib.load_dataset(name, resolution=16)
    assert again.train.source != first.train.source  # the feature cache's key changes with it
    everything = torch.cat([again.train.images, again.test.images])
    assert (everything[:, 1, 8, 8] == 250).sum() == 1  # the new pixels, not the cached old ones


# ---------------------------------------------------------------- 4. a planted pickle runs no code

class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _plant(path, marker):
    torch.save({"ftlib_cache": 1, "sha256": "x", "payload": _Planted(marker)}, path)


def test_a_pickle_planted_at_a_cache_path_runs_no_code(cache_root, tmp_path):
    marker = tmp_path / "code_ran"
    name = _folder(tmp_path / "imgs")
    first = ftlib.load_dataset(name, resolution=16)
    (cached,) = (cache_root / "cache").glob("*.pt")
    _plant(cached, marker)
    datasets.clear_memory()
    with pytest.warns(UserWarning, match="discarding it and rebuilding"):
        again = ftlib.load_dataset(name, resolution=16)
    assert not marker.exists() and torch.equal(again.train.images, first.train.images)

    x, y = np.random.default_rng(0).normal(size=(12, 4)), np.repeat([0, 1], 6)
    w = probe.fit_logistic(x, y, x[:0], y[:0], (1.0,), 2)[0]
    (memo,) = (cache_root / "cache" / "probes").glob("*.pt")
    _plant(memo, marker)
    with pytest.warns(UserWarning, match="discarding it and rebuilding"):
        assert torch.equal(probe.fit_logistic(x, y, x[:0], y[:0], (1.0,), 2)[0], w)
    assert not marker.exists()

    feats = cache_root / "cache" / "features"
    feats.mkdir(parents=True)
    _plant(feats / "lite0-x.pt", marker)  # every cache is read through verified_load
    with pytest.warns(UserWarning):
        assert ftlib.cache.verified_load(feats / "lite0-x.pt", weights_only=False) is None
    assert not marker.exists()


# ---------------------------------------------------------------- 5. folders read as users lay them out

def test_hidden_folders_are_skipped_and_nested_images_are_read(cache_root, tmp_path):
    root = tmp_path / "mine"
    name = _folder(root, n=5)
    _image(root / ".ipynb_checkpoints" / "x.png", (1, 2, 3))  # Jupyter makes these
    _image(root / "a" / ".ipynb_checkpoints" / "y.png", (1, 2, 3))
    for i in range(3):
        _image(root / "b" / "sub" / "deeper" / f"n{i}.png", (9, 9, 9))
    ds = ftlib.load_dataset(name, resolution=16)
    assert ds.classes == ["a", "b"]
    count = [a + b + c for a, b, c in zip(*(torch.bincount(s.labels, minlength=2).tolist()
                                             for s in (ds.train, ds.val, ds.test)))]
    assert count == [5, 8]


def test_valid_is_val_duplicates_are_warned_and_a_class_named_like_a_split_is_named(cache_root, tmp_path):
    root = tmp_path / "split"
    for part, n in (("train", 6), ("valid", 2), ("test", 3)):
        for c in ("a", "b"):
            for i in range(n):
                blue = ["train", "valid", "test"].index(part) * 50
                _image(root / part / c / f"{i}.png", (10 * i, 60 * (c == "a"), blue))
    (root / "test" / "a" / "copy.png").write_bytes((root / "train" / "a" / "0.png").read_bytes())
    with pytest.warns(UserWarning, match=r"1 image\(s\) .* byte-identical copies in more than one of its split"):
        ds = ftlib.load_dataset(f"imagefolder:{root}", resolution=16, val_per_class=2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (12, 4, 7)
    mixed = tmp_path / "mixed"
    _folder(mixed, classes=("cats", "train"))
    with pytest.raises(FtlibError, match=r"split folder\(s\) train/ but also holds cats.*'train'"):
        ftlib.load_dataset(f"imagefolder:{mixed}", resolution=16)


# ---------------------------------------------------------------- 6. predict's inputs

@pytest.fixture(scope="module")
def model():
    from ftlib.checkpoint import FineTuned

    torch.manual_seed(0)
    bb = ftlib.load_backbone("timm/tf_efficientnet_lite0", num_classes=3, pretrained=False)
    return FineTuned(bb.model.eval(), ["x", "y", "z"], 32, bb.mean, bb.std, {})


def test_predict_scales_float_images_and_takes_chw_grey_and_pil(model):
    from ftlib.checkpoint import predict

    u8 = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    want = predict(model, u8, top=3)
    got = predict(model, u8.float() / 255, top=3)
    for a, b in zip(want, got):
        assert [c for c, _ in a] == [c for c, _ in b]
        assert all(math.isclose(p, q, abs_tol=1e-4) for (_, p), (_, q) in zip(a, b))
    assert predict(model, u8[0]) == predict(model, u8[:1])  # CHW is one image
    grey = u8[:1, :1]
    assert predict(model, grey) == predict(model, grey.expand(-1, 3, -1, -1))
    pil = Image.fromarray(u8[0].permute(1, 2, 0).numpy())
    assert predict(model, pil) == predict(model, [pil])


@pytest.mark.parametrize("images, message", [
    (torch.rand(1, 3, 8, 8) * 4 - 2, "float tensor with values"),
    (torch.zeros(1, 32, 32, 3, dtype=torch.uint8), "channels last"),
    (torch.zeros(1, 4, 32, 32, dtype=torch.uint8), "RGBA"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.int64), "dtype torch.int64"),
    (np.zeros((32, 32, 3), np.uint8), "numpy array"),
    ((p for p in ["a.jpg"]), r"list\(\.\.\.\)"),
    ([3.5], "list holding a float"),
])
def test_predict_refuses_every_other_input_by_name(model, images, message):
    from ftlib.checkpoint import predict

    with pytest.raises(FtlibError, match=message):
        predict(model, images)


@pytest.mark.parametrize("top", [0, -1, 1.5, True])
def test_predict_refuses_top_below_one(model, top):
    from ftlib.checkpoint import predict

    with pytest.raises(FtlibError, match="top must be an integer >= 1"):
        predict(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), top=top)


# ---------------------------------------------------------------- 7. no hangs

def test_a_ray_address_where_nothing_listens_fails_in_seconds():
    from ftlib import executors

    start = time.perf_counter()
    with pytest.raises(FtlibError, match=r"nothing answers at 127\.0\.0\.1:1"):
        executors.check_reachable("127.0.0.1:1")
    assert time.perf_counter() - start < 10
    with pytest.raises(FtlibError, match="not host:port"):
        executors.check_reachable("nonsense")


def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path):
    root = tmp_path / "imgs"
    _folder(root)
    os.mkfifo(root / "a" / "pipe.jpg")
    code = ("import warnings, ftlib; warnings.simplefilter('always')\n"
            f"ds = ftlib.load_dataset('imagefolder:{root}', resolution=16); print(len(ds.train) + len(ds.test))")
    env = {**os.environ, "FTLIB_DATA": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "12" and "skipped 1 unreadable" in done.stderr and "pipe.jpg" in done.stderr


# ---------------------------------------------------------------- 8. thin images

def test_a_thin_strip_is_cropped_before_it_is_resized(tmp_path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 40_000), (10, 200, 30)).save(strip)
    code = ("import resource, time; from pathlib import Path; from ftlib.images import decode\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; t = time.perf_counter()\n"
            f"a = decode(Path({str(strip)!r}), 64)\n"
            "print(time.perf_counter() - t, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "
            "a.shape, a[32, 32].tolist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seconds, mb, shape = done.stdout.split(" ", 2)
    assert float(seconds) < 1 and float(mb) < 100, done.stdout  # before: 490 MB at 64 px (3.8 GB at 128)
    assert "(64, 64, 3) [10, 200, 30]" in shape


# ---------------------------------------------------------------- 9. messages that name the real problem

def test_a_read_error_is_reported_as_one_with_its_path(monkeypatch, capsys, cache_root, tmp_path):
    import errno

    from ftlib import __main__ as cli, bench as bench_module

    def loop(*a, **k):
        raise OSError(errno.ELOOP, "Too many levels of symbolic links", "/photos/a/loop.jpg")

    monkeypatch.setattr(bench_module, "bench", loop)
    rc = cli.main(["bench", "--profile", "smoke", "--dataset", "hymenoptera", "--strategies", "linear_probe",
                   "--seeds", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot read /photos/a/loop.jpg (Too many levels" in err and "free some space" not in err
    name = _folder(tmp_path / "imgs")  # a dangling link is an unreadable image, not a traceback
    os.symlink(tmp_path / "gone.png", tmp_path / "imgs" / "a" / "dangling.png")
    with pytest.warns(UserWarning, match="skipped 1 unreadable.*dangling.png"):
        assert len(ftlib.load_dataset(name, resolution=16).classes) == 2


def test_compare_reads_a_read_only_store(tmp_path, monkeypatch, capsys):
    import builtins

    from ftlib import store as store_module
    from ftlib.__main__ import main
    from ftlib.bench import grid

    store = ResultStore(tmp_path / "ro")
    c = grid("cpu")[0]  # compare reads the main grid's runs
    store.add(_record(1, run_id=c.run_id(), dataset=c.dataset, shots=c.shots, seed=c.seed,
                      strategy_label=c.strategy.label, profile="cpu"))

    def read_only_open(path, mode="r", *a, **k):
        if any(m in mode for m in "aw+"):
            raise PermissionError(30, "Read-only file system", str(path))
        return builtins.open(path, mode, *a, **k)

    monkeypatch.setattr(store_module, "open", read_only_open, raising=False)
    ro = ResultStore(tmp_path / "ro")
    assert ro.done_ids() == {c.run_id()} and len(ro.frame()) == 1
    assert main(["compare", str(tmp_path / "ro"), str(tmp_path / "ro")]) == 0
    assert "cells within 2 standard errors: 0/1" in capsys.readouterr().out  # one seed: no standard error
    with pytest.raises(FtlibError, match="is not writable"):
        ro.add(_record(2))


def test_a_dataset_path_with_a_comma_and_a_bad_home_are_understood(monkeypatch, tmp_path):
    from ftlib import __main__ as cli, bench as bench_module

    comma = tmp_path / "my,photos"
    _folder(comma)
    seen = []
    monkeypatch.setattr(bench_module, "bench", lambda configs, out, **kw: seen.extend(configs) or ResultStore(out))
    monkeypatch.setattr(bench_module, "summarise", lambda store: None)
    rc = cli.main(["bench", "--profile", "smoke", "--dataset", f"imagefolder:{comma},hymenoptera", "--strategies",
                   "linear_probe", "--shots", "2", "--seeds", "0", "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0 and {c.dataset for c in seen} == {f"imagefolder:{comma}", "hymenoptera"}
    with pytest.raises(FtlibError, match="nosuchuser"):
        ftlib.load_dataset("imagefolder:~nosuchuser_ftlib/x")


# ---------------------------------------------------------------- 10. upright photos, one profile per store, SIGTERM

def test_exif_orientation_is_applied_when_decoding_and_predicting(tmp_path):
    from ftlib.images import center_crop, decode

    im = Image.new("RGB", (32, 16), (220, 0, 0))
    im.paste((0, 0, 220), (0, 8, 32, 16))  # top half red, bottom half blue, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on the right, blue on the left
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif, quality=95)
    for a in (decode(path, 16), center_crop(Image.open(path), 16)):
        assert a[8, 2, 2] > 150 and a[8, 2, 0] < 80, a[8, 2]  # left: blue
        assert a[8, 13, 0] > 150 and a[8, 13, 2] < 80, a[8, 13]  # right: red


def test_one_results_folder_holds_one_profile(tmp_path):
    from ftlib.bench import bench, grid

    store = ResultStore(tmp_path)
    store.add(_record(1, profile="cpu"))
    configs = grid("smoke", datasets=["hymenoptera"], strategies=["linear_probe"], shots=[2], seeds=[0])
    with pytest.raises(FtlibError, match=r"holds runs of profile cpu; runs of profile smoke.*--out"):
        bench(configs, tmp_path, log=lambda *a: None)


def test_sigterm_prints_the_resume_hint_like_ctrl_c(tmp_path):
    code = ("import os, signal, sys, time\nfrom ftlib import __main__ as cli, bench\n"
            "def stopped(*a, **k):\n    os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\n"
            "bench.bench = stopped\n"
            "sys.exit(cli.main(['bench', '--profile', 'smoke', '--dataset', 'hymenoptera', '--strategies', "
            f"'linear_probe', '--seeds', '0', '--quiet', '--out', {str(tmp_path / 'o')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 143, done.stderr
    assert "rerun the same command to resume" in done.stderr
