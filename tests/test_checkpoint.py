"""Saved models: a checksum and a format version are stored, and anything damaged or foreign is refused by name."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import ftlib
from ftlib.backbones import load_backbone
from ftlib.checkpoint import CHECKPOINT_FORMAT
from ftlib.errors import FtlibError

BACKBONE = "timm/tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    bb = load_backbone(BACKBONE, num_classes=2, pretrained=False)
    path = ftlib.save_finetuned(tmp_path_factory.mktemp("ckpt") / "model.pt", bb, ["ants", "bees"], 32,
                                {"strategy": "full"})
    return path, bb


def _copy(src, dst, edit=None):
    data = bytearray(src.read_bytes())
    if edit:
        data = edit(data)
    dst.write_bytes(bytes(data))
    return dst


def test_a_saved_model_holds_its_format_and_checksum_and_reloads_exactly(saved):
    path, bb = saved
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == CHECKPOINT_FORMAT and len(blob["sha256"]) == 64
    ft = ftlib.load_finetuned(path)
    assert ft.classes == ["ants", "bees"] and ft.resolution == 32 and ft.meta == {"strategy": "full"}
    for k, v in ft.model.state_dict().items():
        assert torch.equal(v, bb.model.state_dict()[k]), k


def test_zeroed_bytes_inside_the_weights_are_refused_by_checksum(saved, tmp_path):
    path, _ = saved
    blob = torch.load(path, weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.numel() > 1000)
    blob["state_dict"][name].zero_()  # the container stays valid: only the checksum can tell
    torch.save(blob, tmp_path / "zeroed.pt")
    with pytest.raises(FtlibError, match=r"zeroed\.pt.*damaged.*sha256"):
        ftlib.load_finetuned(tmp_path / "zeroed.pt")


def test_bytes_zeroed_in_place_in_the_file_are_refused(saved, tmp_path):
    path, _ = saved

    def zero_middle(data):
        mid = len(data) // 2
        data[mid: mid + 4096] = bytes(4096)
        return data

    with pytest.raises(FtlibError, match=r"holed\.pt"):
        ftlib.load_finetuned(_copy(path, tmp_path / "holed.pt", zero_middle))


@pytest.mark.parametrize("what, content, problem", [
    ("truncated", None, "damaged, truncated"),
    ("empty", b"", "empty"),
    ("text", b"hello, this is not a model\n" * 10, "damaged, truncated"),
    ("pickle", pickle.dumps({"state_dict": [1, 2, 3]}), "damaged, truncated"),
], ids=["truncated", "empty", "text", "pickle"])
def test_truncated_empty_and_foreign_files_are_refused_by_name(saved, tmp_path, what, content, problem):
    path, _ = saved
    bad = tmp_path / f"{what}.pt"
    if content is None:
        _copy(path, bad, lambda d: d[: len(d) // 2])
    else:
        bad.write_bytes(content)
    with pytest.raises(FtlibError, match=problem) as err:
        ftlib.load_finetuned(bad)
    assert str(bad) in str(err.value)


def test_another_torch_file_is_not_a_saved_model(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(FtlibError, match=r"other\.pt is not a model saved by ftlib.save_finetuned"):
        ftlib.load_finetuned(tmp_path / "other.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(FtlibError, match="not a model saved"):
        ftlib.load_finetuned(tmp_path / "tensor.pt")


def test_a_folder_and_a_missing_file_are_named(tmp_path):
    with pytest.raises(FtlibError, match="is a folder"):
        ftlib.load_finetuned(tmp_path)
    with pytest.raises(FtlibError, match="nowhere.pt"):
        ftlib.load_finetuned(tmp_path / "nowhere.pt")


def test_wrong_number_of_classes_is_a_mismatch_not_a_traceback(saved, tmp_path):
    path, _ = saved
    blob = torch.load(path, weights_only=True)
    blob["classes"] = ["a", "b", "c"]  # the head holds 2 rows
    torch.save(blob, tmp_path / "three.pt")
    with pytest.raises(FtlibError, match=r"three\.pt does not fit .* with 3 classes.*size mismatch"):
        ftlib.load_finetuned(tmp_path / "three.pt")


def test_unknown_format_and_missing_checksum_are_refused(saved, tmp_path):
    path, _ = saved
    blob = torch.load(path, weights_only=True)
    torch.save({**blob, "format": CHECKPOINT_FORMAT + 1}, tmp_path / "newer.pt")
    with pytest.raises(FtlibError, match=r"newer\.pt has format 2"):
        ftlib.load_finetuned(tmp_path / "newer.pt")
    torch.save({k: v for k, v in blob.items() if k not in ("format", "sha256")}, tmp_path / "old.pt")
    with pytest.raises(FtlibError, match="no format version or checksum"):
        ftlib.load_finetuned(tmp_path / "old.pt")


def test_non_finite_weights_are_refused_on_save_and_on_load(saved, tmp_path):
    path, bb = saved
    blob = torch.load(path, weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.is_floating_point())
    blob["state_dict"][name].view(-1)[0] = float("nan")
    from ftlib.cache import digest

    blob["sha256"] = digest(blob["state_dict"])  # a consistent file that holds NaN
    torch.save(blob, tmp_path / "nan.pt")
    with pytest.raises(FtlibError, match=r"nan\.pt holds non-finite weights"):
        ftlib.load_finetuned(tmp_path / "nan.pt")
    broken = load_backbone(BACKBONE, num_classes=2, pretrained=False)
    with torch.no_grad():
        next(broken.model.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(FtlibError, match="non-finite"):
        ftlib.save_finetuned(tmp_path / "inf.pt", broken, ["a", "b"], 32)
    assert not (tmp_path / "inf.pt").exists()


def test_predict_takes_one_path_a_list_of_paths_and_refuses_an_empty_list(saved, tmp_path):
    path, _ = saved
    ft = ftlib.load_finetuned(path)
    img = tmp_path / "x.png"
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(img)
    one_str, one_path, listed = ftlib.predict(ft, str(img)), ftlib.predict(ft, img), ftlib.predict(ft, [img, img])
    assert len(one_str) == 1 and one_str == one_path and listed == one_path * 2
    with pytest.raises(FtlibError, match="at least one image.*empty list"):
        ftlib.predict(ft, [])
