"""Linear probing: features extracted once (and cached), L2 logistic regression with its strength chosen inside the shots.

Protocol of Kornblith, Shlens & Le (2019): frozen backbone in eval mode, no augmentation,
centre crop, multinomial logistic regression by L-BFGS, regularisation picked from a
log-spaced grid. Two changes for few-shot work: the strength is chosen by cross-validation
inside the k labelled images per class (then refit on all of them), and the nearest-class-mean
head is a candidate too (the limit of strong regularisation, and the only sound choice at one
shot). The solution is written into the model's linear head, so a probe is evaluated, saved
and reused like any other model.
"""
from __future__ import annotations

import hashlib
import time
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from .cache import atomic_save, verified_load
from .paths import cache_dir
from .transforms import prepare
from .fuse import folded_view
from .train import EVAL_BATCH, autocast, device_of


PROBE_SOLVER = "cosine-ncm-or-lbfgs-cv-1se-v6"  # part of the memo key: bump when the solver changes
CV_FOLDS = 5
MEMO_FORMAT = 2  # the memo file's layout: tensors and plain lists (read with weights_only=True)


@torch.inference_mode()
def extract_features(bb, split, batch_size: int = EVAL_BATCH, cache: bool = True, amp: bool = True) -> torch.Tensor:
    """Penultimate features (the head's input) for every image of ``split``: ``[N, D]`` float32.

    Cached on disk per backbone and decoded dataset, image by image, so every seed, shot
    count and strategy reuses what was already computed.

    Example:
        >>> feats = extract_features(bb, ds.train)  # doctest: +SKIP
    """
    path = None
    if cache and bb.pretrained and split.source:
        # the key includes a checksum of the body's weights: features of a fine-tuned body never hit the
        # cache, while a new head (each seed draws one) does not change the features, so it is left out
        head = {id(p) for p in bb.head.parameters()}
        weights = sum(float(p.detach().double().abs().sum()) for p in bb.model.parameters() if id(p) not in head)
        tag = hashlib.sha1(f"{bb.name}|{split.source}|{weights:.6e}".encode(errors="surrogateescape")).hexdigest()[:16]
        path = cache_dir("cache", "features") / f"{bb.name.replace('/', '_')}-{tag}.pt"
    store = (verified_load(path, weights_only=True) if path is not None else None) or {}
    known = {int(i): f for i, f in zip(store.get("index", torch.zeros(0)), store.get("feats", torch.zeros(0)))}
    todo = [j for j, i in enumerate(split.indices.tolist()) if i not in known]
    if todo:
        new = _features(bb, split.images[todo], split.resolution, batch_size, amp)
        for j, f in zip(todo, new):
            known[int(split.indices[j])] = f
        if path is not None:
            index = torch.tensor(sorted(known))
            atomic_save({"index": index, "feats": torch.stack([known[int(i)] for i in index])}, path)
    return torch.stack([known[int(i)] for i in split.indices]) if len(split) else torch.zeros(0)


def _features(bb, images, resolution, batch_size, amp):
    model = folded_view(bb.model, resolution).to(memory_format=torch.channels_last)  # the cached folded copy
    captured = []
    hook = model.get_submodule(bb.head_name).register_forward_hook(
        lambda m, inp, out: captured.append(inp[0].float().cpu()))
    dev = device_of(model)
    try:
        for i in range(0, len(images), batch_size):
            x = prepare(images[i: i + batch_size], resolution, bb.mean, bb.std, device=dev)
            with autocast(dev, amp):
                model(x)
    finally:
        hook.remove()  # the copy outlives this call (evaluate reuses it): leave no hook behind
    return torch.cat(captured)


NCM_TEMPERATURE = 10.0  # logit scale of the cosine head: sets LP-FT's starting confidence, never a prediction


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _absent(y, num_classes) -> np.ndarray:
    """Bias for the classes with no training image: -1e4, so they are never predicted."""
    return np.where(np.bincount(y, minlength=num_classes) > 0, 0.0, -1e4)


def _ncm_head(x: np.ndarray, y: np.ndarray, num_classes: int):
    """Nearest class mean by cosine, as a linear head on unit-norm features: weight = unit class means.

    argmax_c mean_c . x / |x| is argmax_c mean_c . x, so the same head applies to raw features.
    """
    mu = np.stack([x[y == c].mean(0) if (y == c).any() else np.zeros(x.shape[1]) for c in range(num_classes)])
    return NCM_TEMPERATURE * _unit(mu), _absent(y, num_classes)


def _logistic_head(x, y, c, num_classes):
    # no intercept: on unit-norm features a bias-free head has the same argmax on raw features
    clf = LogisticRegression(C=c, max_iter=300, tol=1e-4, fit_intercept=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    coef, seen = clf.coef_, clf.classes_
    weight = np.zeros((num_classes, x.shape[1]))
    if coef.shape[0] == 1:  # binary: sklearn keeps one logit z; softmax([-z/2, z/2]) == sigmoid(z)
        weight[seen[0]], weight[seen[1]] = -coef[0] / 2, coef[0] / 2
    else:
        weight[seen] = coef
    return weight, _absent(y, num_classes)


def _head(x, y, c, num_classes):
    """``c`` = 0 is the nearest-class-mean head (the limit of strong regularisation); else logistic."""
    return _ncm_head(x, y, num_classes) if c == 0 else _logistic_head(x, y, c, num_classes)


def _accuracy(head, x, y) -> float:
    weight, bias = head
    return float(((x @ weight.T + bias).argmax(1) == y).mean())


def _one_standard_error(scores, n_scored: int) -> int:
    """Index of the first candidate scoring within one standard error of the best (0 if none scored)."""
    scores = np.asarray(scores, float)
    if np.isnan(scores).all():
        return 0
    top, n = np.nanmax(scores), max(1, n_scored)
    p = (top * n + 2) / (n + 4)  # Agresti-Coull: a perfect score on 10 images is not certainty
    se = np.sqrt(p * (1 - p) / n)
    return int(np.flatnonzero(scores >= top - se - 1e-12)[0])


def select_and_fit(train_x, train_y, val_x, val_y, c_grid, num_classes: int, folds: int = CV_FOLDS):
    """Choose the regularisation inside the labelled budget, then refit on all training images.

    Candidates: the nearest-class-mean head by cosine (``C = 0``) and bias-free L2 logistic regression
    for each C of ``c_grid``, both on unit-norm features: no per-feature statistics, which 1 or 2
    images per class cannot estimate. A bias-free head on unit-norm features predicts the same class
    from raw features, so it is written into the model's linear head divided by the training features'
    mean norm (probabilities calibrated on average, predictions exact). Selection: on ``val`` when
    one is given; else stratified ``min(folds, smallest class)``-fold cross-validation inside the
    training images; with one image per class nothing can be held out and the nearest-class-mean
    head is used. The one-standard-error rule (Hastie, Tibshirani & Friedman, ESL 7.10) picks the most
    regularised candidate (nearest class mean first, then smaller C) whose score is within one
    standard error of the best: with a handful of held-out images, a larger score is mostly noise.

    Returns ``(weight [K, D], bias [K], path DataFrame with C, score and chosen, selection)`` in raw-feature units.
    """
    x, y = np.asarray(train_x, np.float64), np.asarray(train_y)
    scale = float(np.linalg.norm(x, axis=1).mean()) or 1.0
    x = _unit(x)
    candidates = [0.0, *sorted(float(c) for c in c_grid)]
    smallest = int(np.bincount(y, minlength=num_classes)[np.unique(y)].min()) if len(y) else 0
    with threadpool_limits(1):  # tiny BLAS calls: threads only fight torch's for the cores
        if len(val_y):
            vx, vy = _unit(np.asarray(val_x, np.float64)), np.asarray(val_y)
            scores = [_accuracy(_head(x, y, c, num_classes), vx, vy) for c in candidates]
            selection = "val"
        elif smallest >= 2:
            k = min(folds, smallest)
            split = StratifiedKFold(k, shuffle=True, random_state=0).split(x, y)
            scores = np.zeros(len(candidates))
            for tr, va in split:
                scores += [_accuracy(_head(x[tr], y[tr], c, num_classes), x[va], y[va]) for c in candidates]
            scores = list(scores / k)
            selection = f"cv{k}"
        else:
            scores, selection = [float("nan")] * len(candidates), "ncm (1 shot: nothing to hold out)"
        best = _one_standard_error(scores, len(val_y) or len(y))
        weight, bias = _head(x, y, candidates[best], num_classes)
    path = pd.DataFrame({"C": candidates, "score": scores, "chosen": [i == best for i in range(len(candidates))]})
    return weight / scale, bias, path, selection


def fit_logistic(train_x, train_y, val_x, val_y, c_grid, num_classes: int):
    """``select_and_fit``, memoised on disk (LP-FT reuses the probe of the same split for free).

    Returns ``(weight [K, D] float32, bias [K] float32, path DataFrame, selection)``.
    """
    arrays = [np.ascontiguousarray(a) for a in (train_x, train_y, val_x, val_y)]
    key = hashlib.sha1(b"".join(a.tobytes() for a in arrays)
                       + repr((sorted(c_grid), num_classes, PROBE_SOLVER, MEMO_FORMAT)).encode()).hexdigest()[:20]
    memo = cache_dir("cache", "probes") / f"{key}.pt"
    blob = verified_load(memo)  # tensors and plain lists only (weights_only=True): a planted pickle runs nothing
    if blob is not None:
        return blob["weight"], blob["bias"], pd.DataFrame(blob["path"]), blob["selection"]
    weight, bias, path, selection = select_and_fit(*arrays, c_grid, num_classes)
    weight, bias = torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)
    plain = {"C": [float(c) for c in path.C], "score": [float(v) for v in path.score],
             "chosen": [bool(v) for v in path.chosen]}
    atomic_save({"weight": weight, "bias": bias, "path": plain, "selection": str(selection)}, memo)
    return weight, bias, path, selection


def fit_probe(bb, ds, c_grid, progress: bool = False) -> dict:
    """Probe ``bb`` on ``ds``: write the val-selected solution into ``bb.head``; return what happened.

    Example:
        >>> out = fit_probe(bb, ds, PROBE_C_GRID)  # doctest: +SKIP
        >>> out["C"], out["selection"], out["score"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    tr, va = extract_features(bb, ds.train), extract_features(bb, ds.val)
    feature_seconds = time.perf_counter() - start
    weight, bias, path, selection = fit_logistic(tr, ds.train.labels, va, ds.val.labels, c_grid, len(ds.classes))
    with torch.no_grad():
        bb.head.weight.copy_(weight.to(bb.head.weight.device))
        bb.head.bias.copy_(bias.to(bb.head.bias.device))
    best = path[path.chosen].iloc[0]  # the candidate written into the head (one-standard-error rule)
    return {"C": float(best.C), "score": float(best.score), "selection": selection, "path": path,
            "feature_seconds": feature_seconds, "seconds": time.perf_counter() - start}
