"""The linear probe: its solver against separable tasks and sklearn, its selection inside the shots, its run,
and the few-shot oracle: never worse than a nearest-class-mean classifier on the same features."""
import numpy as np
import pytest
import torch

import ftlib
from ftlib.probe import extract_features, fit_logistic, select_and_fit
from ftlib.train import evaluate

from helpers import HEAD_2, tiny


def blobs(k, d=6, n=30, seed=0, spread=0.3, far=5.0):
    rng = np.random.default_rng(seed)
    centres = far * np.eye(d)[:k] + 1.0  # positive, like pooled ReLU features
    x = np.concatenate([centres[c] + spread * rng.standard_normal((n, d)) for c in range(k)])
    return x.astype(np.float32), np.repeat(np.arange(k), n)


def accuracy(w, b, x, y):
    return float(((torch.as_tensor(x, dtype=torch.float32) @ torch.as_tensor(w, dtype=torch.float32).T
                   + torch.as_tensor(b, dtype=torch.float32)).argmax(1).numpy() == y).mean())


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 4])
def test_probe_solves_a_linearly_separable_task_and_selects_inside_the_training_images(k):
    x, y = blobs(k, seed=0)
    vx, vy = blobs(k, seed=1)
    empty = np.zeros((0, x.shape[1]), np.float32), np.zeros(0, int)
    w, b, path, selection = fit_logistic(x, y, *empty, c_grid=(1e-2, 1.0, 1e2), num_classes=k)
    assert w.shape == (k, x.shape[1]) and b.shape == (k,)
    assert accuracy(w, b, x, y) == 1.0 and accuracy(w, b, vx, vy) == 1.0
    assert selection == "cv5" and list(path.C) == [0.0, 1e-2, 1.0, 1e2] and path.score.max() == 1.0
    assert path.chosen.sum() == 1 and path[path.chosen].score.iloc[0] >= path.score.max() - 0.1


def test_probe_logistic_candidate_gives_sklearn_predictions_on_raw_features():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 4)) + 2.0
    x[:40, 0] += 1.5
    y = (np.arange(80) < 40).astype(int)
    w, b, path, _ = select_and_fit(x, y, x, y, c_grid=(50.0,), num_classes=2)
    chosen = path.C[np.argmax(path.score >= path.score.max() - 1)]  # the row the one-SE rule picks
    if chosen == 50.0:  # oracle: sklearn on unit-norm features, no intercept, predicts the same classes
        ref = LogisticRegression(C=50.0, max_iter=1000, tol=1e-8, fit_intercept=False).fit(unit(x), y).predict(unit(x))
        assert (np.argmax(x @ w.T + b, 1) == ref).mean() >= 0.99


def test_probe_head_is_cosine_nearest_class_mean_at_one_shot():
    x, y = blobs(3, n=1, seed=0)
    x = x + np.random.default_rng(1).random(x.shape).astype(np.float32)
    w, b, path, selection = select_and_fit(x, y, x[:0], y[:0], c_grid=(1.0,), num_classes=3)
    assert selection.startswith("ncm")
    test, ty = blobs(3, n=20, seed=2, spread=2.0)
    mu = unit(x)  # one image per class: the class mean is that image
    assert (np.argmax(test @ w.T + b, 1) == np.argmax(unit(test) @ unit(mu).T, 1)).all()


def test_probe_class_absent_from_train_is_never_predicted():
    x, y = blobs(3, seed=0)
    y = np.where(y == 2, 3, y)  # classes 0, 1, 3 of 4
    w, b, _, _ = fit_logistic(x, y, x, y, c_grid=(1.0,), num_classes=4)
    pred = (torch.as_tensor(x) @ w.T + b).argmax(1).numpy()
    assert (pred == y).all() and not (pred == 2).any()


def test_linear_probe_run_writes_its_solution_into_the_head():
    rec, bb, ds = ftlib.run(tiny(ftlib.linear_probe()), progress=False, return_model=True)
    assert rec["status"] == "ok" and rec["trainable_params"] == HEAD_2 and rec["epochs"] == 0
    assert rec["n_val"] == 0 and rec["n_labelled"] == 8 and rec["probe_selection"] == "cv4"
    path = ftlib.fit_probe(bb, ds, ftlib.linear_probe().c_grid)["path"]
    assert rec["probe_C"] == path[path.chosen].C.iloc[0]  # the C written into the head, not merely the best score
    assert evaluate(bb.model, ds.test, bb.mean, bb.std, amp=False) == pytest.approx(rec["test_acc"])


@pytest.mark.parametrize("dataset,resolution,cap", [("hymenoptera", 96, None), ("cifar10", 96, 40)])
def test_probe_is_at_least_nearest_class_mean_at_few_shots(dataset, resolution, cap):
    """Oracle: a nearest-class-mean classifier (cosine) on the same features, computed here; 5 seeds."""
    for shots in (1, 2, 5):
        probe, ncm = [], []
        for seed in range(5):
            rec, bb, ds = ftlib.run(ftlib.RunConfig(dataset, strategy=ftlib.linear_probe(), shots=shots, seed=seed,
                                                    resolution=resolution, max_test_per_class=cap),
                                    progress=False, return_model=True)
            assert rec["n_labelled"] == shots * len(ds.classes)
            x = extract_features(bb, ds.train).double().numpy()
            t = extract_features(bb, ds.test).double().numpy()
            y = ds.train.labels.numpy()
            mu = np.stack([unit(x)[y == c].mean(0) for c in range(len(ds.classes))])
            ncm.append(float((np.argmax(unit(t) @ unit(mu).T, 1) == ds.test.labels.numpy()).mean()))
            probe.append(rec["test_acc"])
        assert np.mean(probe) >= np.mean(ncm) - 1e-6, (dataset, shots, probe, ncm)
