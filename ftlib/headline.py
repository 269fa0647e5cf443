"""Effect sizes against the published ones, and reruns against a reference, computed from results stores.

Pure functions of the stores; ``./run readme`` (``tools/readme.py``) writes their markdown into the
README and docs/results.md, so the numbers a reader sees are the store's, never typed by hand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import FtlibError
from .store import ResultStore
from .strategies import pretrained_names



def _acc(df: pd.DataFrame, dataset: str, shots, strategy: str) -> np.ndarray:
    ok = df[(df.dataset == dataset) & (df.shots.astype(str) == str(shots)) & (df.strategy == strategy)
            & (df.status == "ok")]
    return ok.sort_values("seed").test_acc.to_numpy(float)


def _pm(a: np.ndarray) -> str:
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if len(a) > 1 else (f"{a.mean():.3f}" if len(a) else "–")


def regimes(df: pd.DataFrame) -> dict:
    """dataset -> its shot regimes, fewest first ("all" last)."""
    out = {}
    for d in dict.fromkeys(df.dataset):
        shots = {str(s) for s in df[df.dataset == d].shots}
        out[d] = sorted(shots, key=lambda s: (0, int(s)) if s.isdigit() else (1, 0))
    return out


def _gap(df, d, k, a, b):
    x, y = _acc(df, d, k, a), _acc(df, d, k, b)
    return x, y, (x.mean() - y.mean()) if len(x) and len(y) else float("nan")


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


def _se(x: np.ndarray, y: np.ndarray) -> float:
    """Standard error of the difference of two means over seeds (Welch)."""
    if len(x) < 2 or len(y) < 2:
        return float("nan")
    return float(np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)))


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
                    means = {s: _acc(df, d, k, s).mean() for s in pretrained_names() if len(_acc(df, d, k, s))}
                    if not means:
                        continue
                    a_used = max(means, key=means.get)
                else:
                    a_used = a
                x, y = _acc(df, d, k, a_used), _acc(df, d, k, b)
                if not len(x) or not len(y):
                    continue
                gap, se = float(x.mean() - y.mean()), _se(x, y)
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
        ks = [k for k in ks if len(_acc(df, d, k, "l2sp")) and len(_acc(df, d, k, "full"))]
        if len(ks) < 2:
            continue
        g = [_gap(df, d, k, "l2sp", "full")[2] for k in (ks[0], ks[-1])]
        parts.append(f"{d} {ks[0]}-shot {100 * g[0]:+.1f}, {ks[-1]}-shot {100 * g[1]:+.1f}")
    if parts:
        out += ["", "L2-SP's gain with more labels (published: it shrinks; TLlib's DELTA +3.6 at 15% of CUB-200, "
                "+0.5 at 100%): " + "; ".join(parts) + "."]
    parts = []
    for d, ks in (reg.items() if "run_id" in df else ()):
        for k in ks:
            dist = {}
            for strat in ("l2sp", "full"):
                ids = df[(df.dataset == d) & (df.shots.astype(str) == k) & (df.strategy == strat)
                         & (df.status == "ok")].run_id
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


def compare_stores(reference, rerun) -> pd.DataFrame:
    """Main-grid test accuracy of two stores side by side: is a rerun within seed noise of the reference?

    Per cell: both means and stds, their difference, the standard error of that difference
    (sqrt((s1² + s2²) / n), n = seeds), whether |difference| <= 2 standard errors, and each
    store's torch thread counts (``threads_reference``, ``threads_rerun``: a run's float rounding
    depends on its thread count, so a rerun with other threads need not match run for run).

    Example:
        >>> compare_stores("results", "data/results/cpu")  # doctest: +SKIP
    """
    from .bench import grid

    ids = {c.run_id() for c in grid("cpu")}
    keys = ["dataset", "shots", "strategy_label"]
    stats = []
    for path in (reference, rerun):
        if not (Path(path) / "results.csv").exists():
            raise FtlibError(f"no results store at {path} (a directory with results.csv, written by python -m ftlib bench)")
        df = ResultStore(path).frame()
        df = df[df.run_id.isin(ids) & (df.status == "ok")] if len(df) else df
        cells = df.groupby(keys) if len(df) else None
        stats.append(cells.test_acc.agg(["mean", "std", "count"]).assign(
            threads=cells.torch_threads.agg(_threads) if "torch_threads" in df else "?") if len(df) else None)
    if any(s is None for s in stats):
        raise FtlibError("both stores need finished main-grid runs (python -m ftlib bench --profile cpu)")
    t = stats[0].join(stats[1], how="inner", suffixes=("_reference", "_rerun"))
    t["diff"] = t.mean_rerun - t.mean_reference
    t["se_diff"] = np.sqrt(t.std_reference ** 2 / t.count_reference + t.std_rerun ** 2 / t.count_rerun)
    t["within_2se"] = t["diff"].abs() <= 2 * t.se_diff + 1e-9
    return t.drop(columns=["count_reference", "count_rerun"])


def _threads(values: pd.Series) -> str:
    """The torch thread counts of a cell's runs: ``"2"``, ``"1,2"``, or ``"?"`` where none is recorded."""
    return ",".join(str(n) for n in sorted({int(v) for v in pd.to_numeric(values, errors="coerce").dropna()})) or "?"


def crossover(df: pd.DataFrame, against: str = "linear_probe", strategies=("full", "lp_ft")) -> pd.DataFrame:
    """Each strategy's gap to ``against`` at every data size of every dataset, with its standard error.

    One row per (dataset, shots, strategy): labelled images per class, the gap in mean test accuracy
    (strategy − ``against``, over seeds), its Welch standard error and a verdict at 2 SE ("ahead",
    "tie", "behind"). Runs a time budget cut short are left out (they are not results).

    Example:
        >>> d = pd.DataFrame({"dataset": "toy", "shots": [5] * 4, "strategy": ["full"] * 2 + ["linear_probe"] * 2,
        ...                   "status": "ok", "test_acc": [0.9, 0.92, 0.7, 0.72], "seed": [0, 1, 0, 1]})
        >>> r = crossover(d, strategies=("full",)).iloc[0]; (float(r.gap), r.verdict)
        (0.2, 'ahead')
    """
    from .report import results

    ok, rows = results(df), []
    for d, shots in regimes(ok).items():
        for k in shots:
            base = _acc(ok, d, k, against)
            for s in strategies:
                x = _acc(ok, d, k, s)
                if not len(x) or not len(base):
                    continue
                gap, se = round(float(x.mean() - base.mean()), 6), _se(x, base)
                verdict = "tie" if not np.isfinite(se) or abs(gap) <= 2 * se else ("ahead" if gap > 0 else "behind")
                rows.append({"dataset": d, "shots": k, "strategy": s, "gap": gap, "se": se, "verdict": verdict})
    return pd.DataFrame(rows, columns=["dataset", "shots", "strategy", "gap", "se", "verdict"])


def overtakes(table: pd.DataFrame) -> dict:
    """(dataset, strategy) -> the smallest size from which the strategy is ahead (beyond 2 SE) at every larger
    size of the grid, or None when it is not ahead at the largest size.

    >>> t = pd.DataFrame({"dataset": "toy", "shots": ["5", "20", "100"], "strategy": "full",
    ...                   "verdict": ["behind", "ahead", "ahead"]})
    >>> overtakes(t)
    {('toy', 'full'): '20'}
    """
    out = {}
    for (d, s), grp in table.groupby(["dataset", "strategy"], sort=False):
        since = None
        for k, verdict in zip(grp.shots, grp.verdict):
            since = (since or k) if verdict == "ahead" else None
        out[(d, s)] = since
    return out
