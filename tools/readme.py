"""Rewrite the generated blocks of README.md and docs/results.md from the committed stores (``./run readme``).

Every number a reader sees in a ``<!-- name -->...<!-- /name -->`` block is computed here from
``results/`` (the ``cpu`` main grid) and ``results/gpu/*`` (the committed ``gpu`` stores), never
typed by hand. Notebook runtimes come from ``docs/notebook-timings.json``, which
``./run notebooks`` writes.

Example:
    python -m tools.readme            # README.md and docs/results.md from results/
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TIMINGS = ROOT / "docs" / "notebook-timings.json"
PLOT = "headline.png"  # the headline figure, written beside the store it plots


def write_blocks(text: str, blocks: dict) -> str:
    """``text`` with each ``<!-- name -->...<!-- /name -->`` block replaced by ``blocks[name]``.

    Example:
        >>> write_blocks("a\\n<!-- x -->\\nold\\n<!-- /x -->\\n", {"x": "new\\n"})
        'a\\n<!-- x -->\\nnew\\n<!-- /x -->\\n'
    """
    for name, block in blocks.items():
        pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name.split(':')[0])} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no <!-- {name} --> ... <!-- /{name} --> block to rewrite")
        text = pattern.sub(lambda m: m.group(1) + block + m.group(2), text)
    return text


def load_main_grid(results_dir=ROOT / "results"):
    """The cpu main grid's rows and sidecar from a store (notebook extras left out)."""
    from ftlib.bench import main_grid
    from ftlib.store import ResultStore

    store = ResultStore(results_dir)
    df = main_grid(store.frame())
    ids = set(df.run_id) if len(df) else set()
    return df, {k: v for k, v in store.sidecar().items() if k in ids}


def _regime_columns(table: pd.DataFrame) -> list:
    return list(dict.fromkeys((d, s) for d, s, _ in table.index))


def _rows(table: pd.DataFrame, cols: list, labels: list, cell) -> list:
    """Markdown rows, one per strategy label: ``cell(row, (dataset, shots))`` per column, "–" where absent."""
    return [f"| {label} | " + " | ".join(cell(table.loc[(d, s, label)], (d, s)) if (d, s, label) in table.index
                                         else "–" for d, s in cols) + " |" for label in labels]


def compact_accuracy(df: pd.DataFrame) -> str:
    """Markdown: strategies as rows, dataset × shots as columns, test accuracy mean ± std; best per column in bold."""
    from ftlib.report import summary_table

    t = summary_table(df, formatted=False)
    cols = _regime_columns(t)
    labels = list(dict.fromkeys(label for _, _, label in t.index))
    head = "| strategy | " + " | ".join(f"{d} {s}" for d, s in cols) + " |"
    best = {c: t.loc[c[0]].loc[c[1]].test_acc_mean.max() for c in cols}

    def cell(r, col):
        text = f"{r.test_acc_mean:.2f} ± {r.test_acc_std:.2f}"
        return f"**{text}**" if r.test_acc_mean == best[col] else text

    lines = [head, "|---|" + "---:|" * len(cols), *_rows(t, cols, labels, cell)]
    return "\n".join(lines) + "\n"


def _cell(df, d, k, strategy):
    from ftlib.report import cell

    ok = cell(df, d, k, strategy)
    return ok.test_acc.to_numpy(float), ok


def _loss(ok) -> str:
    from ftlib.report import loss_over_ln_c

    return f"{pd.to_numeric(ok.steps).mean():.0f} steps, final loss {loss_over_ln_c(ok).mean():.2f} ln C"


def _steps_range(df, strategy) -> str:
    steps = pd.to_numeric(df[(df.strategy == strategy) & (df.status == "ok")].steps)
    return f"{steps.min():.0f}–{steps.max():.0f}" if len(steps) else "–"


def findings(df: pd.DataFrame) -> str:
    """Five bullets, each a number from the store with the budget that produced it."""
    from ftlib.literature import PUBLISHED, effects
    from ftlib.report import regimes

    eff = effects(df)
    reg = regimes(df)
    out = []

    def gap_line(key, d, k):
        row = eff[(eff.effect == key) & (eff.dataset == d) & (eff.shots == str(k))]
        return None if row.empty else row.iloc[0]

    if "hymenoptera" in reg:
        k = reg["hymenoptera"][-1]
        r = gap_line("a", "hymenoptera", k)
        p, _ = _cell(df, "hymenoptera", k, "linear_probe")
        f, ok = _cell(df, "hymenoptera", k, "full")
        if r is not None:
            title = ("Near ImageNet the probe holds its own." if r.ours > -2 * r.se
                     else "Near ImageNet fine-tuning beats the probe.")
            out.append(f"**{title}** hymenoptera, {k} shots: probe {p.mean():.3f}, full "
                       f"fine-tuning {f.mean():.3f} (probe − full {100 * r.ours:+.1f} ± {100 * r.se:.1f} points; "
                       f"published {100 * r.published:+.1f}; direction {r['direction']}, size {r['size']}). "
                       f"Budget: {int(ok.n_labelled.max())} labelled images, {_loss(ok)}.")
    for d, key, title in (("cifar10", "a'", "CIFAR-10 at the cpu budget"),
                          ("fashion_mnist", "b", "Far from ImageNet")):
        if d not in reg:
            continue
        k = reg[d][-1]
        r = gap_line(key, d, k)
        means = {s: _cell(df, d, k, s)[0].mean() for s in ("linear_probe", "partial", "full", "l2sp", "lp_ft")
                 if len(_cell(df, d, k, s)[0])}
        best = max(means, key=means.get)
        _, ok = _cell(df, d, k, "full")
        res = int(ok.resolution.iloc[0]) if len(ok) else "?"
        if r is not None:
            out.append(f"**{title}** ({d}, {k} shots, {res} px): full − probe {100 * r.ours:+.1f} ± {100 * r.se:.1f} "
                       f"points against a published {100 * r.published:+.1f} ({r['direction']}; size {r['size']}); the best "
                       f"strategy is {best} at {means[best]:.3f}. Budget: {int(ok.n_labelled.max())} labelled images, "
                       f"{_loss(ok)}.")
    c = eff[eff.effect == "c"]
    if len(c):
        _, ok = _cell(df, c.iloc[0].dataset, c.iloc[0].shots, "l2sp")
        verb = "≈" if abs(c.ours.mean()) < 0.015 else ("<" if c.ours.mean() < 0 else ">")
        out.append(f"**L2-SP {verb} full fine-tuning at this budget.** L2-SP − full over {len(c)} cells: "
                   f"{100 * c.ours.min():+.1f} to {100 * c.ours.max():+.1f} points (mean {100 * c.ours.mean():+.1f}); "
                   f"published {100 * PUBLISHED['c'][4][0]:+.1f} to {100 * PUBLISHED['c'][4][1]:+.1f} after 9,000 "
                   f"steps of ResNet-101. Directions: {', '.join(f'{n}× {v}' for v, n in c.direction.value_counts().items())}. "
                   f"Budget: {_steps_range(df, 'l2sp')} steps per run.")
    d = eff[eff.effect == "d"]
    if len(d):
        few = d[d.shots.isin([reg[x][0] for x in reg])]
        out.append(f"**Pretraining is worth most at few shots.** Full fine-tuning from ImageNet weights beats the same "
                   f"network from random weights by {100 * few.ours.min():.0f}–{100 * few.ours.max():.0f} points at "
                   f"{', '.join(sorted(set(few.shots)))} shots with the same steps (published "
                   f"{100 * PUBLISHED['d'][3]:.0f}, fine-tuned against random initialisation, on Caltech-101 with all "
                   f"its data).")
    return "\n".join(f"- {b}" for b in out) + "\n"


SIMILARITY = {"hymenoptera": "near ImageNet: its own ant and bee photos",
              "cifar10": "ImageNet-like objects at 32 px",
              "fashion_mnist": "far from ImageNet: grey 28 px product silhouettes"}
PUBLISHED_FOR = {"hymenoptera": "a", "cifar10": "a'", "fashion_mnist": "b"}  # ftlib.literature.PUBLISHED keys


def _size(df, d, k) -> str:
    from ftlib.plots import per_class

    rows = df[(df.dataset == d) & (df.shots.astype(str) == str(k))]
    n = per_class(rows).mean() if len(rows) else float("nan")
    return f"{n:.0f}" if str(k).isdigit() else f"all ({n:.0f})"


def crossover_block(df: pd.DataFrame) -> str:
    """Markdown: per dataset and size, full and LP-FT against the probe (gap ± SE over seeds), and where each
    overtakes it (ahead beyond 2 SE from that size on), beside the published full − probe effect."""
    from ftlib.literature import PUBLISHED
    from ftlib.report import crossover, overtakes

    t = crossover(df)
    since = overtakes(t)
    lines = ["| dataset | images per class | probe | full − probe | LP-FT − probe |", "|---|---:|---:|---:|---:|"]
    for (d, k), grp in t.groupby(["dataset", "shots"], sort=False):
        probe, _ = _cell(df, d, k, "linear_probe")
        cells = {r.strategy: f"{100 * r.gap:+.1f} ± {100 * r.se:.1f} ({r.verdict})" for r in grp.itertuples()}
        lines.append(f"| {d} | {_size(df, d, k)} | {probe.mean():.3f} | {cells.get('full', '–')} | "
                     f"{cells.get('lp_ft', '–')} |")
    text = ["Gaps in accuracy points, mean over seeds ± the standard error of the difference; \"ahead\"/\"behind\" "
            "beyond 2 SE, else \"tie\".", "", *lines, ""]
    for d in dict.fromkeys(t.dataset):
        parts = []
        for s, name in (("full", "Full fine-tuning"), ("lp_ft", "LP-FT")):
            k = since.get((d, s))
            parts.append(f"{name} overtakes the probe from {_size(df, d, k)} images per class" if k else
                         f"{name} does not overtake the probe within the grid")
        key = PUBLISHED_FOR.get(d)
        pub = (f" Published ({PUBLISHED[key][0]}): {100 * PUBLISHED[key][3]:+.1f} points, {PUBLISHED[key][5]}."
               if key else "")
        text.append(f"- **{d}** ({SIMILARITY.get(d, '')}): {'; '.join(parts)}.{pub}")
    return "\n".join(text) + "\n"


def which_strategy(df: pd.DataFrame) -> str:
    """Markdown of ``ftlib.report.which_strategy``: per dataset and size, the strategy to train (the cheapest
    within 2 SE of the best mean), its accuracy and training time, and the best mean where it is another."""
    from ftlib.report import which_strategy as pick

    lines = ["| data | images per class | train this | its accuracy | its training time | best mean (if another) |",
             "|---|---:|---|---:|---:|---|"]
    for (d, k), r in pick(df).iterrows():
        other = "" if r.pick == r.best else f"{r.best} {r.best_acc:.3f}"
        lines.append(f"| {d} | {_size(df, d, k)} | **{r.pick}** | {r.acc:.3f} | {r.seconds:.0f} s | {other} |")
    return "\n".join(lines) + "\n"


AUTO_STORE = "auto.jsonl"  # benchmarks/auto_grid.py's choices, beside the main grid's store


def _auto_choices(results_dir) -> list:
    path = Path(results_dir) / AUTO_STORE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def auto_table(df: pd.DataFrame, results_dir=ROOT / "results") -> str:
    """Markdown of ``ftlib.report.auto_regret``: ``--strategy auto`` against the best fixed strategy per cell."""
    from ftlib.report import auto_regret

    table = auto_regret(df, _auto_choices(results_dir))
    if not len(table):
        return "No choices stored yet: `./run python -m benchmarks.auto_grid` writes them.\n"
    lines = ["| data | images per class | auto chose (seeds) | auto | best fixed | regret ± SE | within 2 SE | "
             "auto's seconds (choose + refit) | × best's | × every candidate once |",
             "|---|---:|---|---:|---|---:|---|---:|---:|---:|"]
    for _, r in table.iterrows():
        lines.append(f"| {r.dataset} | {_size(df, r.dataset, r.shots)} | {r['auto chose']} | {r.auto:.3f} | "
                     f"{r['best strategy']} {r.best:.3f} | {100 * r.regret:+.1f} ± {100 * r.se:.1f} | "
                     f"{'yes' if r['within 2 SE'] else '**no**'} | {r['auto seconds']:.0f} s | "
                     f"{r['cost / best']:.1f}× | {r['cost / all candidates']:.2f}× |")
    meta = _auto_meta(_auto_choices(results_dir))
    return "\n".join(lines) + f"\n\n{meta}\n"


def _auto_meta(rows: list) -> str:
    if not rows:
        return ""
    threads = sorted({r.get("torch_threads") for r in rows if r.get("torch_threads")})
    days = sorted({r["timestamp"][:10] for r in rows if r.get("timestamp")})
    return (f"{len(rows)} choices, ftlib {rows[0].get('ftlib_version', '?')}, {', '.join(days)}, "
            f"{'/'.join(map(str, threads))} torch thread(s) per process; "
            "command: `./run python -m benchmarks.auto_grid` (`--rechoose` applies the current tie order to the "
            "stored held-out scores without training).")


def auto_line(df: pd.DataFrame, results_dir=ROOT / "results") -> str:
    """One README sentence: in how many cells auto is within 2 SE of the best, at what cost."""
    from ftlib.report import auto_regret

    t = auto_regret(df, _auto_choices(results_dir))
    if not len(t):
        return ""
    ok = int(t["within 2 SE"].sum())
    cheap = int((t["cost / best"] <= 3).sum())
    return (f"Measured over the main grid ({len(t)} cells × {int(t.seeds.max())} seeds; table in "
            f"[docs/results.md](docs/results.md#auto-against-the-best-fixed-strategy)): `auto`'s mean is within 2 SE of "
            f"the best fixed strategy in hindsight in {ok} of {len(t)} cells (largest regret "
            f"{100 * t.regret.max():+.1f} points), and choosing plus the refit costs "
            f"{t['cost / best'].min():.1f}–{t['cost / best'].max():.1f}× the best strategy's own training "
            f"(≤ 3× in {cheap} of {len(t)} cells) and {t['cost / all candidates'].min():.2f}–"
            f"{t['cost / all candidates'].max():.2f}× training every candidate once.\n")


NOTEBOOKS = {  # file stem -> what it teaches (one line each)
    "00-setup-and-data": "the datasets, the k-shot splits, the pretrained model, a first prediction",
    "01-fine-tuning-in-plain-pytorch": "head swap, freezing, BatchNorm, parameter groups and the loop in plain "
                                       "PyTorch, then the same with ftlib; CIFAR-10 end to end",
    "02-linear-probing": "frozen features, logistic regression, choosing C inside the shots",
    "03-partial-unfreezing": "unfreezing the last k blocks: accuracy, cost, frozen BatchNorm",
    "04-full-fine-tuning": "learning rate, schedule, LP-FT, training dynamics",
    "05-l2-sp": "the L2-SP penalty, which parameters it covers, where it helps",
    "06-benchmark": "the whole grid: budget, accuracy, cost, the literature's effects",
}


def notebook_table() -> str:
    """Markdown: every notebook with what it teaches and its runtime (rounded; measured by ``./run notebooks``)."""
    times = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    rows = ["| notebook | what it teaches | laptop CPU |", "|---|---|---|"]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        secs = times.get("seconds", {}).get(path.name)
        cost = "–" if secs is None else (f"~{max(1, round(secs / 60))} min" if secs >= 90 else f"~{10 * math.ceil(secs / 10):.0f} s")
        trained = times.get("trained", {}).get(path.name)
        cost += f" ({trained} runs trained)" if trained else ""
        rows.append(f"| [{path.stem}](notebooks/{path.name}) | {NOTEBOOKS.get(path.stem, '')} | {cost} |")
    note = (f"Runtimes: `./run notebooks`, {times['date']}, {times['machine']}. A run already in `results/` is read, "
            "not retrained; the runs a notebook trained into `results/` in that execution are counted beside its "
            "time (with the committed `results/` there are none to train)." if times else "")
    return "\n".join(rows) + ("\n\n" + note if note else "") + "\n"


def headline_meta(df: pd.DataFrame) -> str:
    return (f"{len(df)} runs, {df.seed.nunique()} seeds, backbone {', '.join(sorted(set(df.backbone)))}, "
            "resolution " + ", ".join(f"{d} {r} px" for d, r in df.groupby("dataset").resolution.first().items())
            + "; data: " + ", ".join(f"{d} {s}" for d, s in df.groupby("dataset").data_source.first().items())
            + f"; ftlib {', '.join(sorted(set(df.ftlib_version)))}, torch {', '.join(sorted(set(df.torch_version)))}, "
            f"device {', '.join(sorted(set(df.device)))}.")


def gpu_section() -> str:
    """The committed gpu stores' tables, labelled with the protocol they were made under."""
    from ftlib.report import summary_table, to_markdown
    from ftlib.store import ResultStore

    parts = []
    for path in sorted((ROOT / "results" / "gpu").glob("*/results.csv")):
        df = ResultStore(path.parent).frame()
        df = df[df.status == "ok"]
        t = summary_table(df)
        n_val = df.groupby(["shots"]).n_val.first().to_dict() if "n_val" in df else {}
        epochs = df[df.epochs > 0].groupby("shots").epochs.agg(["min", "max"]).to_dict("index")
        lines = [f"### gpu · {path.parent.name}", "",
                 f"Previous protocol: the epoch (and the probe's C) selected on a val split beyond the k-shot budget "
                 f"(val images per run: {', '.join(f'{k} shots {v}' for k, v in n_val.items())}); epochs "
                 + ", ".join(f"{k} shots {v['min']}–{v['max']}" for k, v in epochs.items())
                 + f"; {len(df)} runs, {df.seed.nunique()} seeds, {', '.join(sorted(set(df.device)))}.", ""]
        lines.append(to_markdown(t, columns=["test_acc", "n_seeds", "train_seconds", "trainable_params"]))
        parts.append("\n".join(lines))
    return "\n".join(parts)


def update(readme=ROOT / "README.md", results_md=ROOT / "docs" / "results.md", results_dir=ROOT / "results") -> None:
    """Rewrite the generated blocks of README.md and docs/results.md, the headline plot and the store's summary."""
    import matplotlib.pyplot as plt

    from ftlib.literature import literature
    from ftlib.page import write_summary
    from ftlib.plots import plot_acc_vs_shots
    from ftlib.report import budget_table, summary_table, to_markdown

    df, side = load_main_grid(results_dir)
    fig = plot_acc_vs_shots(df)
    fig.savefig(Path(results_dir) / PLOT, dpi=110)
    plt.close(fig)
    write_summary(results_dir, run_ids=set(df.run_id))
    scaling = (ROOT / "docs" / "_readme_scaling.md").read_text(encoding="utf-8")
    ownfolder = (ROOT / "docs" / "_readme_ownfolder.md").read_text(encoding="utf-8")
    readme_blocks = {
        "findings": findings(df),
        "notebooks": notebook_table(),
        "headline": f"{headline_meta(df)}\n\n{compact_accuracy(df)}\n![test accuracy against labelled images per class](results/{PLOT})\n",
        "crossover": crossover_block(df),
        "which": which_strategy(df),
        "autoline": auto_line(df, results_dir),
        "scaling: docs/_readme_scaling.md": scaling,
        "ownfolder: docs/_readme_ownfolder.md": ownfolder,
    }
    text = Path(readme).read_text(encoding="utf-8")
    Path(readme).write_text(write_blocks(text, {k: v for k, v in readme_blocks.items()
                                                if f"<!-- {k} -->" in text}), encoding="utf-8")
    cols = ["test_acc", "n_seeds", "train_seconds", "trainable_params", "peak_mem_mb"]
    results_blocks = {
        "budget": to_markdown(budget_table(df)),
        "headline": f"{headline_meta(df)}\n\n{to_markdown(summary_table(df), columns=cols)}",
        "literature": literature(df, side) + "\n",
        "crossover": crossover_block(df) + f"\n![test accuracy against labelled images per class](../results/{PLOT})\n",
        "auto": auto_table(df, results_dir),
        "gpu": gpu_section(),
    }
    text = Path(results_md).read_text(encoding="utf-8")
    Path(results_md).write_text(write_blocks(text, {k: v for k, v in results_blocks.items()
                                                    if f"<!-- {k} -->" in text}), encoding="utf-8")


if __name__ == "__main__":
    update(*sys.argv[1:])
    sys.exit(0)
