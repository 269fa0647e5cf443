"""Datasets: official counts, seeded stratified k-shot splits, user image folders, tensor transforms."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ftlib
from ftlib.errors import FtlibError
from ftlib.splits import split_indices
from ftlib.transforms import prepare, random_resized_crop, to_float

RES = 64  # small and shared by the other test files (the decoded cache is reused)


def per_class(split, num_classes):
    return torch.bincount(split.labels, minlength=num_classes).tolist()


def as_set(split):
    return set(split.indices.tolist())


# ---------------------------------------------------------------- counts

def test_hymenoptera_counts():
    ds = ftlib.load_dataset("hymenoptera", resolution=RES)
    assert ds.classes == ["ants", "bees"]
    assert len(ds.train) + len(ds.val) == 244  # ImageFolder skips train/ants/imageNotFound.gif
    assert len(ds.test) == 153  # the tutorial's val/ folder
    assert [a + b for a, b in zip(per_class(ds.train, 2), per_class(ds.val, 2))] == [123, 121]
    assert per_class(ds.test, 2) == [70, 83]
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (3, RES, RES)


def test_caltech101_counts():
    ds = ftlib.load_dataset("caltech101", resolution=128)  # 128 px is the cached default resolution
    assert len(ds.classes) == 101 and "BACKGROUND_Google" not in ds.classes
    assert len(ds.train) + len(ds.val) + len(ds.test) == 8677
    everything = as_set(ds.train) | as_set(ds.val) | as_set(ds.test)
    assert len(everything) == 8677
    assert len(ds.val) == 0  # no val split unless asked for: a run reads only its training labels
    # every class appears in train and test (stratified)
    for split in (ds.train, ds.test):
        assert min(per_class(split, 101)) >= 1


def test_fashion_mnist_counts():
    ds = ftlib.load_dataset("fashion_mnist", resolution=32)
    assert len(ds.classes) == 10
    assert len(ds.train) + len(ds.val) == 60000
    assert len(ds.test) == 10000
    assert per_class(ds.test, 10) == [1000] * 10
    assert [a + b for a, b in zip(per_class(ds.train, 10), per_class(ds.val, 10))] == [6000] * 10
    x, y = ds.test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32  # grey became 3 channels


def test_cifar10_counts_and_source():
    ds = ftlib.load_dataset("cifar10", resolution=64)
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and len(ds.classes) == 10
    assert per_class(ds.test, 10) == [1000] * 10  # the official test split
    assert ds.origin in ("official", "jpeg-mirror")
    if ds.origin == "jpeg-mirror":
        assert per_class(ds.train, 10) == [1000] * 10
    assert ds.train.images.shape[1:] == (3, 32, 32)  # kept at the native 32 px, resized per batch
    x, _ = ds.train[0]
    assert x.shape == (3, 64, 64)


def test_cpu_grid_reads_no_label_beyond_its_k_shots():
    """The honest labelled budget: every run of the main grid reads exactly k labelled images per class."""
    from ftlib.bench import grid

    for d, k in {(c.dataset, c.shots) for c in grid("cpu")}:
        for seed in (0, 1):
            ds = ftlib.load_dataset(d, shots=k, seed=seed, resolution=32)
            assert len(ds.val) == 0
            if k == "all":  # every labelled training image, none of the test split's
                assert len(ds.train) == ds.sizes["train"] and not as_set(ds.train) & as_set(ds.test)
            else:
                assert per_class(ds.train, len(ds.classes)) == [k] * len(ds.classes)


# ---------------------------------------------------------------- k-shot splits

def test_caltech101_five_shot_is_exact_repeatable_and_disjoint():
    a = ftlib.load_dataset("caltech101", shots=5, seed=0, resolution=128)
    assert per_class(a.train, 101) == [5] * 101
    b = ftlib.load_dataset("caltech101", shots=5, seed=0, resolution=128)
    assert torch.equal(a.train.indices, b.train.indices)
    assert torch.equal(a.val.indices, b.val.indices) and torch.equal(a.test.indices, b.test.indices)
    assert not as_set(a.train) & as_set(a.val)
    assert not as_set(a.train) & as_set(a.test)
    assert not as_set(a.val) & as_set(a.test)
    # labels travel with their images
    full = ftlib.load_dataset("caltech101", resolution=128)
    all_labels = torch.empty(8677, dtype=torch.int64)
    for s in (full.train, full.val, full.test):
        all_labels[s.indices] = s.labels
    assert torch.equal(all_labels[a.train.indices], a.train.labels)


def test_other_seed_changes_train_not_test():
    a = ftlib.load_dataset("caltech101", shots=5, seed=0, resolution=128)
    c = ftlib.load_dataset("caltech101", shots=5, seed=1, resolution=128)
    assert not torch.equal(a.train.indices, c.train.indices)
    assert torch.equal(a.test.indices, c.test.indices)
    assert per_class(c.train, 101) == [5] * 101


def test_too_many_shots_names_the_smallest_class():
    # hymenoptera training pools (no val split): ants 123, bees 121
    ds = ftlib.load_dataset("hymenoptera", shots=121, seed=0, resolution=RES)
    assert per_class(ds.train, 2) == [121, 121]
    with pytest.raises(FtlibError) as err:
        ftlib.load_dataset("hymenoptera", shots=122, seed=0, resolution=RES)
    assert "'bees'" in str(err.value) and "121" in str(err.value)


@pytest.mark.parametrize("shots", [0, -3, "some", 2.5, True])
def test_bad_shots_value(shots):
    with pytest.raises(FtlibError):
        ftlib.load_dataset("hymenoptera", shots=shots, resolution=RES)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(FtlibError) as err:
        ftlib.load_dataset("hymenoptra")
    msg = str(err.value)
    assert isinstance(err.value, ValueError)
    for name in ("hymenoptera", "caltech101", "fashion_mnist", "imagefolder:"):
        assert name in msg


# ---------------------------------------------------------------- imagefolder

def _png(path, rgb, size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Decoded caches of throw-away folders go to a temporary data root, not the repository's data/."""
    root = tmp_path / "data_root"
    monkeypatch.setenv("FTLIB_DATA", str(root))
    return root


def test_imagefolder_skips_and_counts_unreadable_files(tmp_path, private_cache):
    root = tmp_path / "mine"
    colours = {"apple": (200, 0, 0), "leaf": (0, 200, 0), "sky": (0, 0, 200)}
    for cls, rgb in colours.items():
        for i in range(10):
            _png(root / cls / f"{i}.png", rgb)
    bad = root / "leaf" / "broken.png"
    bad.write_bytes(b"this is not a png")
    (root / "sky" / "notes.txt").write_text("not an image extension, ignored silently")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable") as rec:
        ds = ftlib.load_dataset(f"imagefolder:{root}", resolution=16)
    assert any("broken.png" in str(w.message) for w in rec)
    assert ds.classes == ["apple", "leaf", "sky"]
    total = [a + b + c for a, b, c in zip(per_class(ds.train, 3), per_class(ds.val, 3), per_class(ds.test, 3))]
    assert total == [10, 10, 10]  # the broken file is the eleventh in leaf/
    # each image carries its class's colour
    for split in (ds.train, ds.val, ds.test):
        for img, y in zip(split.images, split.labels):
            want = torch.tensor(colours[ds.classes[int(y)]], dtype=torch.uint8)
            assert torch.equal(img[:, 8, 8], want)


def test_imagefolder_respects_train_val_test_subfolders(tmp_path, private_cache):
    root = tmp_path / "split"
    n = {"train": 6, "val": 2, "test": 3}
    red = {"train": 10, "val": 120, "test": 240}  # the red channel says which folder an image came from
    for part, count in n.items():
        for cls in ("a", "b"):
            for i in range(count):
                _png(root / part / cls / f"{i}.png", (red[part], 50 if cls == "a" else 150, 0))
    default = ftlib.load_dataset(f"imagefolder:{root}", resolution=16)  # no val split asked: val/ is left unread
    assert per_class(default.train, 2) == [6, 6] and len(default.val) == 0 and per_class(default.test, 2) == [3, 3]
    assert (default.train.images[:, 0] == red["train"]).all()  # never pooled into train
    ds = ftlib.load_dataset(f"imagefolder:{root}", resolution=16, val_per_class=2)  # asked for: val/ is used
    assert ds.classes == ["a", "b"]
    assert per_class(ds.train, 2) == [6, 6] and per_class(ds.val, 2) == [2, 2] and per_class(ds.test, 2) == [3, 3]
    for part in n:
        split = getattr(ds, part)
        assert (split.images[:, 0] == red[part]).all(), part
    shot = ftlib.load_dataset(f"imagefolder:{root}", shots=2, seed=3, resolution=16, val_per_class=2)
    assert per_class(shot.train, 2) == [2, 2]
    assert (shot.train.images[:, 0] == red["train"]).all()
    assert torch.equal(shot.test.indices, ds.test.indices)


def test_imagefolder_without_val_carves_val_from_train(tmp_path, private_cache):
    root = tmp_path / "noval"
    for part, count, r in (("train", 10, 10), ("test", 4, 240)):
        for cls in ("a", "b"):
            for i in range(count):
                _png(root / part / cls / f"{i}.png", (r, 0, 0))
    ds = ftlib.load_dataset(f"imagefolder:{root}", resolution=16, val_per_class=2)
    assert len(ds.test) == 8 and (ds.test.images[:, 0] == 240).all()
    assert len(ds.val) == 4 and (ds.val.images[:, 0] == 10).all()
    assert len(ds.train) + len(ds.val) == 20
    assert len(ftlib.load_dataset(f"imagefolder:{root}", resolution=16).val) == 0  # by default: no val


HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "hymenoptera_data"


@pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="the hymenoptera mirror is not beside this clone")
def test_the_val_rule_splits_a_folder_exactly_like_the_built_in_hymenoptera(tmp_path, private_cache):
    """Without test/, val/ is the test split (the tutorial's layout); with test/, val/ is only ever val."""
    built_in = ftlib.load_dataset("hymenoptera", resolution=32)
    sizes = lambda ds: [per_class(s, 2) for s in (ds.train, ds.val, ds.test)]  # noqa: E731
    assert sizes(built_in) == [[123, 121], [0, 0], [70, 83]]
    tutorial = ftlib.load_dataset(f"imagefolder:{HYMENOPTERA}", resolution=32)  # train/ + val/
    assert tutorial.classes == built_in.classes and sizes(tutorial) == sizes(built_in)
    assert torch.equal(tutorial.test.images, built_in.test.images)
    three = tmp_path / "three"  # train/ + val/ + test/: the tutorial's val/ moved to test/, a new val/
    three.mkdir()
    (three / "train").symlink_to(HYMENOPTERA / "train")
    (three / "test").symlink_to(HYMENOPTERA / "val")
    for c, g in (("ants", 40), ("bees", 160)):
        for i in range(4):
            _png(three / "val" / c / f"{i}.png", (250, g, 10 * i))
    plain = ftlib.load_dataset(f"imagefolder:{three}", resolution=32)
    assert sizes(plain) == sizes(built_in)  # val/ is neither trained on nor tested on
    with_val = ftlib.load_dataset(f"imagefolder:{three}", resolution=32, val_per_class=3)
    assert sizes(with_val) == [[123, 121], [3, 3], [70, 83]] and (with_val.val.images[:, 0] == 250).all()


def test_imagefolder_missing_path_says_where(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FtlibError, match="nowhere"):
        ftlib.load_dataset(f"imagefolder:{missing}")


# ---------------------------------------------------------------- splits (pure functions)

def _check_partition(idx, n):
    tr, va, te = (set(idx[k].tolist()) for k in ("train", "val", "test"))
    assert not tr & va and not tr & te and not va & te
    return tr, va, te


def test_split_without_official_roles_is_stratified_and_test_is_seed_free():
    sizes = [50, 30, 11, 5]
    labels = np.repeat(np.arange(4), sizes)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]  # classes interleaved
    role = np.array([""] * len(labels))
    classes = list("abcd")
    first = split_indices(labels, role, classes, seed=0, val_per_class=3)
    tr, va, te = _check_partition(first, len(labels))
    assert tr | va | te == set(range(len(labels)))
    for c, n in enumerate(sizes):
        n_test = max(1, round(0.2 * n))
        n_val = 3
        assert (labels[first["test"]] == c).sum() == n_test
        assert (labels[first["val"]] == c).sum() == n_val
        assert (labels[first["train"]] == c).sum() == n - n_test - n_val
    for seed in (1, 2):
        other = split_indices(labels, role, classes, seed=seed, val_per_class=3)
        assert np.array_equal(other["test"], first["test"])
    assert not np.array_equal(split_indices(labels, role, classes, seed=1, val_per_class=3)["val"], first["val"])
    again = split_indices(labels, role, classes, seed=0, val_per_class=3)
    assert all(np.array_equal(again[k], first[k]) for k in first)


def test_split_with_official_test_never_takes_val_from_test():
    labels = np.repeat([0, 1, 2], 40)
    role = np.array((["train"] * 30 + ["test"] * 10) * 3)
    idx = split_indices(labels, role, ["a", "b", "c"], seed=4, val_per_class=6)
    _check_partition(idx, len(labels))
    assert set(idx["test"].tolist()) == set(np.flatnonzero(role == "test").tolist())
    assert all(role[i] == "train" for i in idx["val"])
    assert np.bincount(labels[idx["val"]]).tolist() == [6, 6, 6]


def test_split_with_official_val_uses_it():
    labels = np.repeat([0, 1], 20)
    role = np.array((["train"] * 12 + ["val"] * 3 + ["test"] * 5) * 2)
    idx = split_indices(labels, role, ["a", "b"], shots=4, seed=0, val_per_class=3)
    assert set(idx["val"].tolist()) == set(np.flatnonzero(role == "val").tolist())
    assert set(idx["test"].tolist()) == set(np.flatnonzero(role == "test").tolist())
    assert np.bincount(labels[idx["train"]]).tolist() == [4, 4]
    assert all(role[i] == "train" for i in idx["train"])


def test_split_shots_are_exact_and_nested_pool():
    labels = np.repeat([0, 1], 30)
    role = np.array([""] * 60)
    every = split_indices(labels, role, ["a", "b"], shots="all", seed=7)
    three = split_indices(labels, role, ["a", "b"], shots=3, seed=7)
    assert np.bincount(labels[three["train"]]).tolist() == [3, 3]
    assert set(three["train"].tolist()) <= set(every["train"].tolist())
    assert np.array_equal(three["val"], every["val"]) and np.array_equal(three["test"], every["test"])


def test_split_max_test_per_class_is_a_fixed_subset():
    labels = np.repeat([0, 1], 50)
    role = np.array(["train"] * 30 + ["test"] * 20 + ["train"] * 30 + ["test"] * 20)
    whole = split_indices(labels, role, ["a", "b"], seed=0)
    small = [split_indices(labels, role, ["a", "b"], seed=s, max_test_per_class=5)["test"] for s in (0, 1)]
    assert np.array_equal(small[0], small[1])
    assert np.bincount(labels[small[0]]).tolist() == [5, 5]
    assert set(small[0].tolist()) <= set(whole["test"].tolist())


# ---------------------------------------------------------------- transforms

def test_random_resized_crop_shape_and_seed():
    x = torch.rand(4, 3, 32, 32)
    a = random_resized_crop(x, 24, torch.Generator().manual_seed(5))
    b = random_resized_crop(x, 24, torch.Generator().manual_seed(5))
    c = random_resized_crop(x, 24, torch.Generator().manual_seed(6))
    assert a.shape == (4, 3, 24, 24)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_full_crop_without_flip_is_identity_and_flip_mirrors():
    x = torch.rand(6, 3, 16, 16)
    same = random_resized_crop(x, 16, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1), flip=False)
    assert torch.allclose(same, x, atol=1e-5)
    out = random_resized_crop(x, 16, torch.Generator().manual_seed(1), scale=(1, 1), ratio=(1, 1), flip=True)
    flipped = [torch.allclose(o, xi.flip(-1), atol=1e-5) for o, xi in zip(out, x)]
    kept = [torch.allclose(o, xi, atol=1e-5) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped)


def test_grey_becomes_three_channels():
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    x = to_float(grey, 28)
    assert x.shape == (2, 3, 28, 28)
    assert torch.equal(x[:, 0], grey[:, 0].float() / 255) and torch.equal(x[:, 0], x[:, 2])
    for gen in (None, torch.Generator().manual_seed(0)):
        y = prepare(grey, 32, (0.5,) * 3, (0.5,) * 3, generator=gen)
        assert y.shape == (2, 3, 32, 32)
        assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])


def test_prepare_normalises_with_given_mean_std():
    img = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    y = prepare(img, 8, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([1.0, 3.0, 0.5]))
