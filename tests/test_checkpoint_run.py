"""A fine-tuned run saved, reloaded and used to predict: same weights, same accuracy."""
import numpy as np
import pytest
import torch

import ftlib
from ftlib.errors import FtlibError
from ftlib.train import evaluate


def test_saved_run_reloads_and_reproduces_its_test_accuracy(partial1_run, tmp_path):
    rec, bb, ds = partial1_run
    path = ftlib.save_finetuned(tmp_path / "ants.pt", bb, ds.classes, ds.resolution, rec)
    ft = ftlib.load_finetuned(path)
    assert ft.classes == ["ants", "bees"] and ft.resolution == 64
    assert ft.mean == bb.mean and ft.std == bb.std
    assert ft.meta["test_acc"] == rec["test_acc"] and ft.meta["strategy"] == "partial"
    saved = bb.model.state_dict()
    for k, v in ft.model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert evaluate(ft.model, ds.test, ft.mean, ft.std, amp=False) == rec["test_acc"]
    # predict: names and probabilities; top-1 names reproduce the same accuracy
    out = ftlib.predict(ft, ds.test.images, top=2)
    assert len(out) == len(ds.test) and all(len(o) == 2 for o in out)
    assert all(abs(sum(p for _, p in o) - 1.0) < 1e-5 for o in out)
    names = [o[0][0] for o in out]
    truth = [ds.classes[int(y)] for y in ds.test.labels]
    assert np.mean([a == b for a, b in zip(names, truth)]) == pytest.approx(rec["test_acc"])
    # a file on disk gives the same answer as its tensor
    from PIL import Image

    img = ds.test.images[0]
    png = tmp_path / "first.png"
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(png)
    from_file = ftlib.predict(ft, [png], top=2)[0]
    assert [n for n, _ in from_file] == [n for n, _ in out[0]]
    assert [p for _, p in from_file] == pytest.approx([p for _, p in out[0]], abs=1e-5)
    with Image.open(png) as im:  # an opened PIL image goes through the same centre crop as its file
        assert ftlib.predict(ft, [im], top=2)[0] == from_file


def test_load_finetuned_missing_file_says_where(tmp_path):
    with pytest.raises(FtlibError, match="nowhere.pt"):
        ftlib.load_finetuned(tmp_path / "nowhere.pt")
