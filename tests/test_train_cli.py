"""``ftlib train``: a model, metrics.json and two PNGs from one command; ``--test-fraction 0``; bad input."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ftlib
from ftlib.final import resolve_device

ROOT = Path(__file__).resolve().parent.parent
HYMENOPTERA = ROOT.parent / "shared" / "datasets" / "hymenoptera_data"


def folder(tmp_path, per_class=10, split="train", name="imgs"):
    """A folder of class sub-folders with the first ``per_class`` hymenoptera images of each class."""
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"no offline hymenoptera images at {HYMENOPTERA}")
    root = tmp_path / name
    for c in ("ants", "bees"):
        (root / c).mkdir(parents=True)
        for f in sorted((HYMENOPTERA / split / c).glob("*.jpg"))[:per_class]:
            shutil.copy(f, root / c / f.name)
    return root


def cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "ftlib", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_train_writes_a_model_that_recognises_held_out_images_with_its_metrics(tmp_path):
    data, out = folder(tmp_path, per_class=20), tmp_path / "m"
    res = cli("train", f"imagefolder:{data}", "--strategy", "linear_probe", "--resolution", "64",
              "--test-fraction", "0.25", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "about" in res.stdout and "measured" in res.stdout  # the plan and its time estimate came first
    assert res.stdout.index("measured") < res.stdout.index("test accuracy")
    for name in ("model.pt", "metrics.json", "confusion.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    # the test split is the one load_dataset carves with the same fraction; the saved model reproduces the score
    ds = ftlib.load_dataset(f"imagefolder:{data}", resolution=64, test_fraction=0.25)
    assert m["data"]["train_images"] == len(ds.train) == 30 and m["test"]["images"] == len(ds.test) == 10
    model = ftlib.load_finetuned(out / "model.pt")
    pred = [p[0][0] for p in ftlib.predict(model, ds.test.images)]
    truth = [ds.classes[i] for i in ds.test.labels]
    assert m["test"]["accuracy"] == pytest.approx(sum(p == t for p, t in zip(pred, truth)) / len(truth))
    cm = m["test"]["confusion_matrix"]["counts"]
    assert sum(map(sum, cm)) == 10 and [sum(r) for r in cm] == [m["test"]["per_class"][c]["support"]
                                                               for c in ("ants", "bees")]
    recall_ants = cm[0][0] / sum(cm[0])
    assert m["test"]["per_class"]["ants"]["recall"] == pytest.approx(recall_ants)
    assert set(m["budget"]) >= {"steps", "passes", "final_train_loss", "train_accuracy", "train_seconds",
                                "peak_mem_mb"} and m["budget"]["train_seconds"] > 0
    assert m["versions"]["torch"] == str(torch.__version__) and m["auto"] is None
    # held-out images the model never saw (the tutorial's val folder): recognised above chance
    val = folder(tmp_path, per_class=20, split="val", name="val")
    files = sorted(val.rglob("*.jpg"))
    hits = [best[0][0] == f.parent.name for f, best in zip(files, ftlib.predict(model, files))]
    assert len(hits) == 40 and sum(hits) / len(hits) > 0.6


def test_test_fraction_zero_trains_on_every_image_and_says_no_test_score_exists(tmp_path):
    data, out = folder(tmp_path, per_class=4), tmp_path / "m"
    res = cli("train", f"imagefolder:{data}", "--strategy", "partial:k=1", "--resolution", "32", "--profile", "smoke",
              "--passes", "2", "--test-fraction", "0", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == ""  # --quiet: warnings and errors only
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"] is None and "no test score" in m["test_note"]
    assert m["data"]["train_images"] == 8 and m["data"]["test_images"] == 0
    assert m["budget"]["passes"] >= 2 and m["budget"]["passes"] == pytest.approx(m["budget"]["steps"] * 8 / 8)
    assert not (out / "confusion.png").exists() and (out / "curves.png").stat().st_size > 0
    assert ftlib.load_finetuned(out / "model.pt").classes == ["ants", "bees"]


@pytest.mark.parametrize("args, message", [
    (["--strategy", "ful"], "unknown strategy 'ful' (did you mean 'full'?)"),
    (["--test-fraction", "1"], "--test-fraction must be a number from 0"),
    (["--passes", "0"], "--passes must be a number > 0"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--shots", "50"], "shots=50 is more than class"),
])
def test_bad_train_input_is_one_line_exit_2(tmp_path, args, message):
    data = folder(tmp_path, per_class=4)
    res = cli("train", f"imagefolder:{data}", "--resolution", "32", "--out", str(tmp_path / "m"), *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_device_that_is_not_there_is_named_with_the_available_ones():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ftlib.FtlibError, match="'cuda' is not available.*available here: auto, cpu"):
            resolve_device("cuda")


def test_console_script_names_itself_ftlib():
    res = cli("train", "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: ftlib train")
    assert "--test-fraction" in res.stdout and "examples:" in res.stdout and os.linesep in res.stdout
