"""``ftlib predict``: folders searched recursively, one CSV row per image, unreadable files listed, exit codes."""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ftlib
from helpers import tiny

ROOT = Path(__file__).resolve().parent.parent
HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera_data"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    record, bb, ds = ftlib.run(tiny(ftlib.linear_probe()), progress=False, return_model=True)
    return ftlib.save_finetuned(tmp_path_factory.mktemp("m") / "model.pt", bb, ds.classes, ds.resolution, record)


@pytest.fixture
def photos(tmp_path):
    """photos/a.jpg, photos/deep/er/b.jpg, photos/deep/c.jpg, a broken .jpg and a text file."""
    files = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:2] + sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:1]
    if len(files) < 3:
        pytest.skip(f"no offline hymenoptera images at {HYMENOPTERA}")
    root = tmp_path / "photos"
    (root / "deep" / "er").mkdir(parents=True)
    for f, where in zip(files, ("a.jpg", "deep/er/b.jpg", "deep/c.jpg")):
        shutil.copy(f, root / where)
    (root / "deep" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "notes.txt").write_text("not an image, not listed")
    return root


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ftlib", "predict", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_predict_recurses_writes_one_row_per_image_and_lists_unreadable_files(model_path, photos, tmp_path):
    out = tmp_path / "p.csv"
    res = cli(str(model_path), str(photos), "--csv", str(out), "--top-k", "2")
    assert res.returncode == 1, res.stderr  # one file skipped
    assert "skipped 1 file" in res.stderr and str(photos / "deep" / "broken.jpg") in res.stderr
    assert "notes.txt" not in res.stderr
    rows = list(csv.DictReader(out.open()))
    expected = [photos / "a.jpg", photos / "deep" / "c.jpg", photos / "deep" / "er" / "b.jpg"]
    assert [r["path"] for r in rows] == [str(p) for p in expected]
    direct = ftlib.predict(ftlib.load_finetuned(model_path), expected, top=2)
    for row, best in zip(rows, direct):
        assert (row["class"], row["class_2"]) == (best[0][0], best[1][0])
        assert float(row["probability"]) == pytest.approx(best[0][1], abs=1e-5)
        assert float(row["probability"]) + float(row["probability_2"]) == pytest.approx(1, abs=1e-5)


def test_every_file_read_exits_0_and_csv_goes_to_stdout_without_csv(model_path, photos):
    (photos / "deep" / "broken.jpg").unlink()
    res = cli(str(model_path), str(photos / "a.jpg"), str(photos / "deep"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "path,class,probability" and len(lines) == 4


def test_bad_model_or_no_images_exit_2(model_path, photos, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    res = cli(str(bad), str(photos))
    assert res.returncode == 2 and "cannot read saved model" in res.stderr and "Traceback" not in res.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli(str(model_path), str(empty))
    assert res.returncode == 2 and "no images to classify" in res.stderr
    res = cli(str(model_path), str(photos / "deep" / "broken.jpg"))
    assert res.returncode == 2 and "broken.jpg" in res.stderr
