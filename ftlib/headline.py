"""The README's headline: table and literature checks computed from a results store, as markdown.

Pure functions of the store; ``./run readme`` (``tools/readme.py``) writes their blocks into the
README, so the numbers a reader sees are the store's means and standard deviations, never typed by hand.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import FtlibError
from .paths import REPO_ROOT
from .report import summary_table, to_markdown
from .store import ResultStore

COLUMNS = ["test_acc", "n_seeds", "train_seconds", "trainable_params", "peak_mem_mb"]
PLOT = "headline.png"


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


def literature(df: pd.DataFrame, sidecar: dict) -> str:
    """Effects (a)-(e) of docs/references.md, each with our numbers and a computed verdict."""
    reg = regimes(df)
    lines = []
    near = [d for d in ("hymenoptera", "caltech101") if d in reg]
    rows = []
    for d in near:
        for k in reg[d]:
            p, f, g = _gap(df, d, k, "linear_probe", "full")
            rows.append((d, k, p, f, g))
    holds = all(g >= -0.01 for *_, g in rows)
    lines.append(f"**(a) The probe ties or beats full fine-tuning near ImageNet** — "
                 f"{'holds' if holds else 'does not hold everywhere'} (tie = within 1 point): "
                 + "; ".join(f"{d} {k}-shot probe {_pm(p)} vs full {_pm(f)} ({g:+.3f})" for d, k, p, f, g in rows)
                 + ".")
    if "fashion_mnist" in reg:
        parts = [(k, *_gap(df, "fashion_mnist", k, "full", "linear_probe")) for k in reg["fashion_mnist"]]
        holds = all(g > 0 for *_, g in parts)
        lines.append(f"**(b) Full fine-tuning beats the probe far from ImageNet (fashion_mnist)** — "
                     f"{'holds' if holds else 'does not hold everywhere'}: "
                     + "; ".join(f"{k}-shot full {_pm(f)} vs probe {_pm(p)} ({g:+.3f})" for k, f, p, g in parts) + ".")
    parts, verdicts = [], []
    for d, ks in reg.items():
        few, many = ks[0], ks[-1]
        _, _, g_few = _gap(df, d, few, "l2sp", "full")
        if few == many:  # one regime: "shrinking with more" cannot be tested, so the dataset is not counted
            parts.append(f"{d}: {few}-shot {g_few:+.3f} (one regime, not counted)")
            continue
        _, _, g_many = _gap(df, d, many, "l2sp", "full")
        verdicts.append(g_few >= 0 and g_few >= g_many)
        parts.append(f"{d}: {few}-shot {g_few:+.3f}, {many}-shot {g_many:+.3f}")
    lines.append(f"**(c) L2-SP ≥ full fine-tuning with few labels, the gain shrinking with more** — "
                 f"holds on {sum(verdicts)} of {len(verdicts)} datasets (L2-SP minus full, test accuracy): "
                 + "; ".join(parts) + ".")
    parts, verdicts = [], []
    for d, ks in reg.items():
        few = ks[0]
        s = _acc(df, d, few, "scratch")
        best = max(((_acc(df, d, few, x).mean(), x) for x in ("linear_probe", "full", "l2sp", "lp_ft")
                    if len(_acc(df, d, few, x))), default=(float("nan"), "-"))
        verdicts.append(best[0] - s.mean() >= 0.15)
        parts.append(f"{d} {few}-shot scratch {_pm(s)} vs {best[1]} {best[0]:.3f} ({s.mean() - best[0]:+.3f})")
    lines.append(f"**(d) Scratch far behind at few shots** (15 points or more) — holds on {sum(verdicts)} of "
                 f"{len(verdicts)} datasets: " + "; ".join(parts) + ".")
    parts, verdicts = [], []
    for d, ks in reg.items():
        for k in ks:
            dist = {}
            for strat in ("l2sp", "full"):
                ids = df[(df.dataset == d) & (df.shots.astype(str) == k) & (df.strategy == strat)
                         & (df.status == "ok")].run_id
                blocks = pd.DataFrame([sidecar[i]["block_distance"] for i in ids if i in sidecar])
                dist[strat] = blocks.drop(columns=["head"], errors="ignore").mean()
            if len(dist["l2sp"]) and len(dist["full"]):
                closer = int((dist["l2sp"] < dist["full"]).sum())
                verdicts.append(closer == len(dist["full"]))
                ratio = float((dist["l2sp"] / dist["full"]).median())
                parts.append(f"{d} {k}-shot: {closer}/{len(dist['full'])} blocks closer, median ratio {ratio:.2f}")
    lines.append(f"**(e) L2-SP keeps every block closer to w⁰ than full fine-tuning** (mean ‖w−w⁰‖/‖w⁰‖ over "
                 f"seeds, body blocks) — holds in {sum(verdicts)} of {len(verdicts)} dataset × regime cells: "
                 + "; ".join(parts) + ".")
    return "\n\n".join(lines)


def headline(results_dir) -> dict:
    """Markdown blocks for the README, computed from the store at ``results_dir``."""
    from .bench import grid

    store = ResultStore(results_dir)
    df, side = store.frame(), store.sidecar()
    df = df[df.run_id.isin({c.run_id() for c in grid("cpu")})]  # the main grid only, not notebook extras
    rel = (store.path / PLOT).resolve().relative_to(REPO_ROOT)
    meta = (f"{len(df)} runs, {df.seed.nunique()} seeds, backbone {', '.join(sorted(set(df.backbone)))}, "
            f"profile {', '.join(sorted(set(df.profile)))}, resolution per dataset "
            + ", ".join(f"{d} {r} px" for d, r in df.groupby("dataset").resolution.first().items())
            + f"; torch {', '.join(sorted(set(df.torch_version)))}, ftlib {', '.join(sorted(set(df.ftlib_version)))}, "
            f"device {', '.join(sorted(set(df.device)))}.")
    table = to_markdown(summary_table(df), columns=COLUMNS)
    return {"headline": f"{meta}\n\n{table}\n![accuracy vs shots]({rel})\n",
            "literature": literature(df, side) + "\n"}


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
