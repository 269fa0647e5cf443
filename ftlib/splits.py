"""Seeded, stratified train / val / test index splits (pure functions of labels and a seed).

Rules, per class:
- ``test``: the official test split when the source ships one; otherwise a fixed carve of
  ``TEST_FRACTION`` of each class, drawn with ``TEST_SEED`` so it never depends on the run seed.
  ``test_fraction=F`` replaces both: a fixed carve of F of each class from all its images (the
  official test split pooled in), and ``test_fraction=0`` leaves no test split at all (a final
  model trained on every labelled image).
- ``train``: ``shots=k`` keeps exactly k labelled images per class, chosen with the run seed from
  everything that is not test; ``"all"`` keeps them all.
- ``val``: empty by default. A k-shot run is honest about its labels: every selection it makes
  (the probe's C, an epoch, a learning rate) happens inside its k images per class, so no extra
  labelled split is read. ``val_per_class=n`` carves n more labelled images per class (the source's
  own val split when it ships one) for teaching and diagnostics; they count in the labelled budget.
  A source's own val images are never trained on, even when no val split is asked for.
"""
from __future__ import annotations

import numpy as np

from .errors import FtlibError

TEST_FRACTION = 0.2
TEST_SEED = 12345


def parse_shots(shots):
    """``"all"`` or a positive int (``"5"`` is accepted); anything else is a clear error."""
    if isinstance(shots, str) and shots.strip().isdigit():
        shots = int(shots)
    if shots == "all" or (isinstance(shots, (int, np.integer)) and not isinstance(shots, bool) and shots > 0):
        return shots if shots == "all" else int(shots)
    raise FtlibError(f"shots must be 'all' or a positive integer, got {shots!r}")


def _perm(indices: np.ndarray, *seed) -> np.ndarray:
    return indices[np.random.default_rng(list(seed)).permutation(len(indices))]


def check_test_fraction(test_fraction):
    """``None`` (the dataset's own rule) or a number in [0, 1); anything else is a clear error."""
    if test_fraction is None:
        return None
    ok = isinstance(test_fraction, (int, float, np.floating)) and not isinstance(test_fraction, bool)
    if not ok or not 0 <= test_fraction < 1:
        raise FtlibError(f"test_fraction must be a number from 0 (no test split: train on every labelled image) "
                         f"up to but not including 1, got {test_fraction!r}")
    return float(test_fraction)


def split_indices(labels, role, classes, shots="all", seed: int = 0, max_test_per_class=None,
                  val_per_class: int = 0, test_fraction=None) -> dict:
    """Split image indices into ``train``, ``val`` and ``test`` (sorted int arrays).

    Args:
        labels: class index per image.
        role: per image ``"train"``, ``"val"``, ``"test"`` or ``""`` as the source ships it.
        classes: class names (for error messages).
        val_per_class: labelled val images per class carved before the k shots (0: no val split).
        test_fraction: None keeps the source's test split (else carves ``TEST_FRACTION``); a number F
            carves F of each class from all its images instead, and 0 leaves no test split.

    Example:
        >>> labels = np.repeat([0, 1], 10); role = np.array([""] * 20)
        >>> {k: len(v) for k, v in split_indices(labels, role, ["a", "b"], shots=3).items()}
        {'train': 6, 'val': 0, 'test': 4}
        >>> {k: len(v) for k, v in split_indices(labels, role, ["a", "b"], shots=3, val_per_class=2).items()}
        {'train': 6, 'val': 4, 'test': 4}
        >>> {k: len(v) for k, v in split_indices(labels, role, ["a", "b"], test_fraction=0).items()}
        {'train': 20, 'val': 0, 'test': 0}
    """
    shots = parse_shots(shots)
    labels, role = np.asarray(labels), np.asarray(role)
    test_fraction = check_test_fraction(test_fraction)
    if test_fraction is not None:  # the caller's carve replaces the source's test split
        role = np.where(role == "test", "", role)
    fraction = TEST_FRACTION if test_fraction is None else test_fraction
    has_test, has_val = (role == "test").any(), (role == "val").any()
    check_class_counts(classes)  # one class: refused before any split
    out, sizes = {"train": [], "val": [], "test": []}, []
    for c in range(len(classes)):
        mine = np.flatnonzero(labels == c)
        if has_test:
            test, pool = mine[role[mine] == "test"], mine[role[mine] != "test"]
        else:
            fixed = _perm(mine, TEST_SEED, c)
            n_test = max(1, round(fraction * len(mine))) if fraction > 0 else 0
            test, pool = fixed[:n_test], fixed[n_test:]
        if max_test_per_class is not None:
            test = _perm(test, TEST_SEED, c, 1)[:max_test_per_class]
        if has_val:  # the source's own val split is only ever val: never pooled into train
            val, train = pool[role[pool] == "val"][:val_per_class], pool[role[pool] != "val"]
        elif val_per_class:
            pool = _perm(pool, seed, c)
            val, train = pool[:val_per_class], pool[val_per_class:]
        else:
            val, train = pool[:0], pool
        sizes.append({"images": len(mine), "test": len(mine) - len(pool), "val": len(val), "train": len(train),
                      "only_test": has_test and len(mine) > 0 and len(pool) == 0})
        if shots != "all":
            train = _perm(np.sort(train), seed, c, 2)[:shots]  # check_class_counts refuses a short class
        for k, v in (("train", train), ("val", val), ("test", test)):
            out[k].append(v)
    check_class_counts(classes, sizes, shots, carved_test=not has_test, val_per_class=val_per_class,
                       test_fraction=fraction)
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}


def _needed(k: int, val: int, fraction: float = TEST_FRACTION) -> int:
    """Images a class needs when test is carved from it: test + val + ``k`` training images."""
    n = k + val + (1 if fraction > 0 else 0)
    while n - (max(1, round(fraction * n)) if fraction > 0 else 0) - val < k:
        n += 1
    return n


def check_class_counts(classes, sizes=None, shots="all", carved_test: bool = True, val_per_class: int = 0,
                       test_fraction: float = TEST_FRACTION) -> None:
    """Refuse data that cannot give every class a training image, or the k shots asked for.

    ``sizes`` holds, per class, its ``images`` and how many went to ``test``, ``val`` and ``train``
    (``only_test``: the source put every image of it in its test split). Without ``sizes`` only the
    class count is checked (at least 2), which ``FolderSource.read`` does before decoding anything.

    Example:
        >>> check_class_counts(["cat"])
        Traceback (most recent call last):
        ftlib.errors.FtlibError: a classification dataset needs at least 2 classes; found 1: 'cat' (one sub-folder of images per class)
    """
    if len(classes) < 2:
        names = ", ".join(repr(c) for c in classes[:5])
        raise FtlibError(f"a classification dataset needs at least 2 classes; found {len(classes)}"
                         + (f": {names}" if names else "") + " (one sub-folder of images per class)")
    if sizes is None:
        return
    k = 1 if shots == "all" else shots
    empty = [(c, s) for c, s in zip(classes, sizes) if s["train"] == 0]
    if empty:
        why = []
        for c, s in empty[:5]:
            if s["images"] == 0:
                why.append(f"{c!r} has no readable image")
            elif s["only_test"]:
                why.append(f"{c!r} is only in the test split ({s['images']} images; none to train on)")
            elif carved_test:
                why.append(f"{c!r} has {s['images']} image(s): too few for test ({s['test']}) + val ({s['val']}) + "
                           f"{k} shot(s); it needs at least {_needed(k, val_per_class, test_fraction)}")
            else:
                why.append(f"{c!r} has {s['images']} image(s), all in test ({s['test']}) and val ({s['val']})")
        more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        raise FtlibError(f"{len(empty)} class(es) have no training image after the split, so this dataset cannot "
                         f"serve any shots: {'; '.join(why)}{more}. Add images to them or remove their folders")
    if shots != "all":
        short = [(c, s) for c, s in zip(classes, sizes) if s["train"] < shots]
        if short:
            c, s = min(short, key=lambda cs: cs[1]["train"])
            largest = min(s["train"] for s in sizes)
            raise FtlibError(f"shots={shots} is more than class {c!r} has for training ({s['train']} images after "
                             f"test ({s['test']}) and val ({s['val']}) are set aside"
                             + (f"; {len(short)} classes are short" if len(short) > 1 else "")
                             + f"); choose shots <= {largest}, or shots=all")
