"""Linear probing: features extracted once (and cached), L2 logistic regression with its strength chosen on val.

Protocol of Kornblith, Shlens & Le (2019): frozen backbone in eval mode, no
augmentation, centre crop, multinomial logistic regression by L-BFGS, regularisation
picked on a validation split from a log-spaced grid. The solution is written into the
model's linear head, so a probe is evaluated, saved and reused like any other model.
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

from .paths import atomic_save, cache_dir, verified_load
from .transforms import prepare
from .fuse import folded_view
from .train import EVAL_BATCH, autocast, device_of


PROBE_SOLVER = "standardised-lbfgs-v1"  # part of the memo key: bump when the solver changes


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
        tag = hashlib.sha1(f"{bb.name}|{split.source}|{weights:.6e}".encode()).hexdigest()[:16]
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


def fit_logistic(train_x, train_y, val_x, val_y, c_grid, num_classes: int):
    """Fit one L-BFGS logistic regression per C (warm-started, small to large); keep the best on val.

    Features are standardised with the train mean/std first (L-BFGS converges in far fewer
    iterations); the scaling is folded back into the returned weights, so they apply to raw
    features. Returns ``(weight [K, D], bias [K], path DataFrame with C and val_acc)``.
    Results are memoised on disk: LP-FT reuses the probe of the same split for free.
    """
    train_x, val_x = np.asarray(train_x, np.float64), np.asarray(val_x, np.float64)
    train_y, val_y = np.asarray(train_y), np.asarray(val_y)
    key = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in (train_x, train_y, val_x, val_y))
                       + repr((sorted(c_grid), num_classes, PROBE_SOLVER)).encode()).hexdigest()[:20]
    memo = cache_dir("cache", "probes") / f"{key}.pt"
    blob = verified_load(memo, weights_only=False)
    if blob is not None:
        return blob["weight"], blob["bias"], pd.DataFrame(blob["path"])
    mu, sigma = train_x.mean(0), train_x.std(0) + 1e-6
    tx, vx = (train_x - mu) / sigma, (val_x - mu) / sigma
    clf = LogisticRegression(max_iter=300, warm_start=True, tol=1e-4)
    rows, best = [], None
    for c in sorted(c_grid):
        clf.set_params(C=c)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(tx, train_y)
        acc = float((clf.predict(vx) == val_y).mean())
        rows.append({"C": c, "val_acc": acc})
        if best is None or acc > best[0]:  # ties keep the smaller C: the stronger regularisation
            best = (acc, clf.coef_ / sigma, clf.intercept_ - (clf.coef_ / sigma) @ mu, clf.classes_.copy())
    _, coef, intercept, seen = best
    weight, bias = np.zeros((num_classes, coef.shape[1])), np.zeros(num_classes)
    if coef.shape[0] == 1:  # binary: sklearn keeps one logit z; softmax([-z/2, z/2]) == sigmoid(z)
        weight[seen[0]], weight[seen[1]] = -coef[0] / 2, coef[0] / 2
        bias[seen[0]], bias[seen[1]] = -intercept[0] / 2, intercept[0] / 2
    else:
        weight[seen], bias[seen] = coef, intercept
        missing = np.setdiff1d(np.arange(num_classes), seen)
        bias[missing] = -1e4  # a class absent from train can never be predicted
    weight, bias = torch.tensor(weight, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)
    atomic_save({"weight": weight, "bias": bias, "path": rows}, memo)
    return weight, bias, pd.DataFrame(rows)


def fit_probe(bb, ds, c_grid, progress: bool = False) -> dict:
    """Probe ``bb`` on ``ds``: write the val-selected solution into ``bb.head``; return what happened.

    Example:
        >>> out = fit_probe(bb, ds, PROBE_C_GRID)  # doctest: +SKIP
        >>> out["C"], out["val_acc"]  # doctest: +SKIP
    """
    start = time.perf_counter()
    tr, va = extract_features(bb, ds.train), extract_features(bb, ds.val)
    feature_seconds = time.perf_counter() - start
    weight, bias, path = fit_logistic(tr, ds.train.labels, va, ds.val.labels, c_grid, len(ds.classes))
    with torch.no_grad():
        bb.head.weight.copy_(weight.to(bb.head.weight.device))
        bb.head.bias.copy_(bias.to(bb.head.bias.device))
    best = path.loc[path.val_acc.idxmax()]
    return {"C": float(best.C), "val_acc": float(best.val_acc), "path": path,
            "feature_seconds": feature_seconds, "seconds": time.perf_counter() - start}
