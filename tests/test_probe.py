"""The linear probe: L-BFGS logistic regression against separable tasks and sklearn, and its run."""
import numpy as np
import pytest
import torch

import ftlib
from ftlib.probe import fit_logistic
from ftlib.train import evaluate

from helpers import HEAD_2, tiny


def blobs(k, d=6, n=30, seed=0, spread=0.3, far=5.0):
    rng = np.random.default_rng(seed)
    centres = far * np.eye(d)[:k]
    x = np.concatenate([centres[c] + spread * rng.standard_normal((n, d)) for c in range(k)])
    return x.astype(np.float32), np.repeat(np.arange(k), n)


def accuracy(w, b, x, y):
    return float(((torch.as_tensor(x) @ w.T + b).argmax(1).numpy() == y).mean())


@pytest.mark.parametrize("k", [2, 4])
def test_probe_solves_a_linearly_separable_task(k):
    x, y = blobs(k, seed=0)
    vx, vy = blobs(k, seed=1)
    w, b, path = fit_logistic(x, y, vx, vy, c_grid=(1e-2, 1.0, 1e2), num_classes=k)
    assert w.shape == (k, x.shape[1]) and b.shape == (k,)
    assert accuracy(w, b, x, y) == 1.0 and accuracy(w, b, vx, vy) == 1.0
    assert list(path.C) == [1e-2, 1.0, 1e2] and path.val_acc.max() == 1.0


def test_probe_binary_head_gives_sklearn_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 4))
    y = (x[:, 0] + 0.8 * rng.standard_normal(80) > 0).astype(int)
    w, b, _ = fit_logistic(x, y, x, y, c_grid=(0.5,), num_classes=2)
    # the probe fits on features standardised with the train mean/std, then folds the scaling back
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ref = LogisticRegression(C=0.5, max_iter=1000, tol=1e-8).fit(z, y).predict_proba(z)
    ours = torch.softmax(torch.as_tensor(x, dtype=torch.float32) @ w.T + b, 1).numpy()
    assert np.allclose(ours, ref, atol=2e-3)  # the probe stops at tol=1e-4


def test_probe_class_absent_from_train_is_never_predicted():
    x, y = blobs(3, seed=0)
    y = np.where(y == 2, 3, y)  # classes 0, 1, 3 of 4
    w, b, _ = fit_logistic(x, y, x, y, c_grid=(1.0,), num_classes=4)
    pred = (torch.as_tensor(x) @ w.T + b).argmax(1).numpy()
    assert (pred == y).all() and not (pred == 2).any()


def test_linear_probe_run_writes_its_solution_into_the_head():
    rec, bb, ds = ftlib.run(tiny(ftlib.linear_probe()), progress=False, return_model=True)
    assert rec["status"] == "ok" and rec["trainable_params"] == HEAD_2 and rec["epochs"] == 0
    assert evaluate(bb.model, ds.val, bb.mean, bb.std, amp=False) == pytest.approx(rec["val_acc"])
    assert evaluate(bb.model, ds.test, bb.mean, bb.std, amp=False) == pytest.approx(rec["test_acc"])
    assert rec["probe_C"] in ftlib.linear_probe().c_grid
