"""The published effects and ours beside them: effect sizes from the literature against a results DataFrame.

Pure functions of ``df`` (``ResultStore(path).frame()``, filtered to one grid) and its sidecar;
``./run readme`` (``tools/readme.py``) writes their markdown into docs/results.md, so the numbers a
reader sees are the store's, never typed by hand. docs/references.md says where each published
number comes from.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .report import accuracies, cell, regimes, welch_se
from .strategies import pretrained_names

# Published effect sizes (accuracy points / 100) the cpu grid is compared with; docs/references.md says where each
# comes from. ``near``: datasets whose images are close to ImageNet's; ``far``: far from it.
PUBLISHED = {
    "a": ("probe − full, near ImageNet", "linear_probe", "full", 0.003, (-0.006, 0.012),
          "SimCLR Table B.5 (ResNet-50, full data): Caltech-101 +1.2, DTD +0.3, Pets −0.6; mean +0.3"),
    "a'": ("full − probe, CIFAR-10", "full", "linear_probe", 0.039, (0.039, 0.039),
           "SimCLR Table B.5 (ResNet-50, 50,000 images, 224 px): 97.5 vs 93.6"),
    "b": ("full − probe, far from ImageNet", "full", "linear_probe", 0.25, (0.25, 0.254),
          "SimCLR Table B.5: Cars +25.4, Aircraft +25.0"),
    "c": ("L2-SP − full", "l2sp", "full", 0.039, (0.031, 0.049),
          "Li et al. 2018 (ResNet-101, 30-100 images per class): +3.1 to +4.9"),
    "d": ("full − scratch", "full", "scratch", 0.207, (0.207, 0.207),
          "SimCLR Table B.5, Caltech-101 full data: fine-tuned 93.3 vs random initialisation 72.6 (more at few shots)"),
    "f": ("LP-FT − full", "lp_ft", "full", 0.01, (0.01, 0.01),
          "Kumar et al. 2022, in distribution: about +1"),
}
EFFECT_DATASETS = {"a": ("hymenoptera", "caltech101"), "a'": ("cifar10",), "b": ("fashion_mnist",)}


def _gap(df: pd.DataFrame, d: str, k, a: str, b: str) -> float:
    """Mean test accuracy of strategy ``a`` minus that of ``b`` in one cell (NaN where either has no runs)."""
    x, y = accuracies(df, d, k, a), accuracies(df, d, k, b)
    return (x.mean() - y.mean()) if len(x) and len(y) else float("nan")


def _verdicts(gap: float, se: float, published: float, band: tuple) -> tuple:
    """Direction (holds / tie / reversed, at 2 standard errors) and size (comparable or not) of one gap."""
    if not np.isfinite(gap):
        return "–", "–"
    sign = np.sign(published) if abs(published) >= 0.01 else 0  # a published effect under 1 point is a tie
    if not np.isfinite(se) or abs(gap) <= 2 * se:
        direction = "holds (tie)" if sign == 0 else "tie (not resolved)"
    elif sign == 0:
        direction = "no: a clear gap where a tie is published"
    else:
        direction = "holds" if np.sign(gap) == sign else "reversed"
    lo, hi = band
    margin = 2 * (se if np.isfinite(se) else 0.0)
    size = "comparable" if lo - margin - 0.01 <= gap <= hi + margin + 0.01 else (
        "larger" if gap > hi else "smaller")
    return direction, size


def effects(df: pd.DataFrame) -> pd.DataFrame:
    """Each published effect beside ours: per dataset × regime, our gap ± its standard error, the
    published gap, whether the direction holds and whether the size is comparable.

    A gap of 37 points never "confirms" a 1-point effect: direction and size are judged apart.
    """
    reg = regimes(df)
    rows = []
    for key, (what, a, b, published, band, source) in PUBLISHED.items():
        datasets = EFFECT_DATASETS.get(key, tuple(reg))
        for d in [d for d in datasets if d in reg]:
            for k in reg[d]:
                if a is None:  # the best pretrained strategy of the cell
                    means = {s: accuracies(df, d, k, s).mean() for s in pretrained_names()
                             if len(accuracies(df, d, k, s))}
                    if not means:
                        continue
                    a_used = max(means, key=means.get)
                else:
                    a_used = a
                x, y = accuracies(df, d, k, a_used), accuracies(df, d, k, b)
                if not len(x) or not len(y):
                    continue
                gap, se = float(x.mean() - y.mean()), welch_se(x, y)
                direction, size = _verdicts(gap, se, published, band)
                rows.append({"effect": key, "what": what if a is not None else f"{a_used} − scratch",
                             "dataset": d, "shots": k, "ours": gap, "se": se, "published": published,
                             "direction": direction, "size": size, "source": source})
    return pd.DataFrame(rows, columns=["effect", "what", "dataset", "shots", "ours", "se", "published",
                                       "direction", "size", "source"])


def literature(df: pd.DataFrame, sidecar: dict) -> str:
    """Markdown: ``effects`` as a table (published and measured effect sizes side by side), the trend of
    L2-SP's gain with more labels, and whether L2-SP keeps the body closer to w⁰ (block distances)."""
    t = effects(df)
    lines = ["| effect | dataset | shots | ours ± SE | published | direction | size |", "|---|---|---|---:|---:|---|---|"]
    for r in t.itertuples():
        se = "–" if not np.isfinite(r.se) else f"{100 * r.se:.1f}"
        lines.append(f"| ({r.effect}) {r.what} | {r.dataset} | {r.shots} | {100 * r.ours:+.1f} ± {se} | "
                     f"{100 * r.published:+.1f} | {r.direction} | {r.size} |")
    out = ["Gaps in accuracy points (mean over seeds; SE of the difference of two means). Direction: the sign "
           "of the published effect, judged at 2 SE; size: within the published range ± 2 SE (and 1 point).",
           "", *lines, "", "Published sources: " + "; ".join(
               f"({k}) {v[5]}" for k, v in PUBLISHED.items()) + "."]
    reg = regimes(df)
    parts = []
    for d, ks in reg.items():
        ks = [k for k in ks if len(accuracies(df, d, k, "l2sp")) and len(accuracies(df, d, k, "full"))]
        if len(ks) < 2:
            continue
        g = [_gap(df, d, k, "l2sp", "full") for k in (ks[0], ks[-1])]
        parts.append(f"{d} {ks[0]}-shot {100 * g[0]:+.1f}, {ks[-1]}-shot {100 * g[1]:+.1f}")
    if parts:
        out += ["", "L2-SP's gain with more labels (published: it shrinks; TLlib's DELTA +3.6 at 15% of CUB-200, "
                "+0.5 at 100%): " + "; ".join(parts) + "."]
    parts = []
    for d, ks in (reg.items() if "run_id" in df else ()):
        for k in ks:
            dist = {}
            for strat in ("l2sp", "full"):
                ids = cell(df, d, k, strat).run_id
                blocks = pd.DataFrame([sidecar[i]["block_distance"] for i in ids if i in sidecar])
                dist[strat] = blocks.drop(columns=["head"], errors="ignore").mean()
            if len(dist["l2sp"]) and len(dist["full"]):
                closer = int((dist["l2sp"] < dist["full"]).sum())
                ratio = float((dist["l2sp"] / dist["full"]).median())
                parts.append(f"{d} {k}-shot {closer}/{len(dist['full'])} blocks closer (median ratio {ratio:.2f})")
    if parts:
        out += ["", "(e) L2-SP keeps the body closer to w⁰ than full fine-tuning (Li et al. 2018; mean ‖w−w⁰‖/‖w⁰‖ "
                "per body block over seeds): " + "; ".join(parts) + "."]
    return "\n".join(out)
