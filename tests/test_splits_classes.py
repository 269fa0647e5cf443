"""Classes that cannot be trained on are refused by name, with the reason and what would work."""
import re

import numpy as np
import pytest
from PIL import Image

from ftlib import datasets
from ftlib.errors import FtlibError
from ftlib.splits import check_class_counts, split_indices


def _folder(root, counts, sub=""):
    """``counts``: class -> number of 12x12 PNGs (0: an empty class folder)."""
    for c, n in counts.items():
        d = root / sub / c if sub else root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((12, 12, 3), 10 * i, np.uint8)).save(d / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FTLIB_DATA", str(tmp_path / "data"))
    yield
    datasets.clear_memory()


def test_a_class_only_in_test_is_named_with_the_reason():
    labels, role = np.repeat([0, 1], [10, 4]), np.array(["train"] * 10 + ["test"] * 4)
    with pytest.raises(FtlibError, match=r"'zebra' is only in the test split \(4 images; none to train on\)"):
        split_indices(labels, role, ["ant", "zebra"], shots="all")


def _number_after(text, words):
    m = re.search(re.escape(words) + r" (\d+)", text)
    assert m, (words, text)
    return int(m.group(1))


def test_a_class_too_small_for_test_val_and_shots_says_how_many_it_needs():
    labels, role = np.repeat([0, 1], [10, 1]), np.array([""] * 11)
    with pytest.raises(FtlibError, match=r"cannot serve any shots: 'tiny' has 1 image\(s\): too few for test "
                                         r"\(1\) \+ val \(\d+\) \+ 1 shot\(s\); it needs at least") as err:
        split_indices(labels, role, ["big", "tiny"], shots="all")
    needed = _number_after(str(err.value), "it needs at least")
    ok = split_indices(np.repeat([0, 1], [10, needed]), np.array([""] * (10 + needed)), ["big", "tiny"], shots=1)
    assert len(ok["train"]) == 2  # the number it names is enough


def test_too_many_shots_names_the_largest_valid_one_which_is_at_least_one():
    labels, role = np.repeat([0, 1], [10, 4]), np.array([""] * 14)
    with pytest.raises(FtlibError, match=r"shots=5 is more than class 'small' has for training") as err:
        split_indices(labels, role, ["big", "small"], shots=5)
    largest = _number_after(str(err.value), "choose shots <=")
    assert largest >= 1 and len(split_indices(labels, role, ["big", "small"], shots=largest)["train"]) == 2 * largest
    with pytest.raises(FtlibError):
        split_indices(labels, role, ["big", "small"], shots=largest + 1)


def test_one_class_is_refused_before_any_work():
    with pytest.raises(FtlibError, match="at least 2 classes; found 1: 'only'"):
        check_class_counts(["only"])
    with pytest.raises(FtlibError, match="found 0"):
        check_class_counts([])


def test_a_one_class_folder_is_refused_before_decoding(tmp_path, monkeypatch):
    from ftlib import sources

    root = _folder(tmp_path / "one", {"cats": 5})
    monkeypatch.setattr(sources, "decode", lambda *a: pytest.fail("decoded a one-class folder"))
    with pytest.raises(FtlibError, match="at least 2 classes; found 1: 'cats'"):
        datasets.load_dataset(f"imagefolder:{root}", resolution=16)


def test_an_empty_class_folder_is_named_in_a_warning_and_left_out(tmp_path):
    root = _folder(tmp_path / "f", {"a": 6, "b": 6, "empty": 0})
    with pytest.warns(UserWarning, match=r"hold no image file and are left out: empty"):
        ds = datasets.load_dataset(f"imagefolder:{root}", resolution=16)
    assert ds.classes == ["a", "b"]


def test_shots_all_on_a_folder_with_a_too_small_class_is_a_clear_error(tmp_path):
    root = _folder(tmp_path / "f", {"a": 6, "b": 1})
    with pytest.raises(FtlibError, match=r"'b' has 1 image\(s\): too few"):
        datasets.load_dataset(f"imagefolder:{root}", shots="all", resolution=16)


def test_a_class_present_only_in_the_test_folder_of_a_split_folder(tmp_path):
    root = _folder(tmp_path / "f", {"a": 4, "b": 4}, "train")
    _folder(root, {"a": 2, "b": 2, "c": 3}, "test")
    with pytest.raises(FtlibError, match=r"'c' is only in the test split"):
        datasets.load_dataset(f"imagefolder:{root}", shots=1, resolution=16)


def test_a_class_whose_files_are_all_unreadable_is_named(tmp_path):
    root = _folder(tmp_path / "f", {"a": 6, "b": 6})
    (root / "c").mkdir()
    (root / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="unreadable"), pytest.raises(FtlibError, match="'c' has no readable image"):
        datasets.load_dataset(f"imagefolder:{root}", resolution=16)


def test_a_non_utf8_file_name_is_fingerprinted_and_read(tmp_path):
    import os

    root = _folder(tmp_path / "f", {"a": 4, "b": 4})
    bad = os.fsencode(root / "a") + b"/caf\xe9.png"  # Latin-1 bytes: not valid UTF-8
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(os.fsdecode(bad))
    ds = datasets.load_dataset(f"imagefolder:{root}", resolution=16)
    assert sum(ds.sizes.values()) == 9
