"""The README's headline numbers are the committed store's, recomputed, never typed by hand."""
import re

import pytest

from ftlib.bench import grid
from ftlib.paths import REPO_ROOT
from ftlib.store import ResultStore

RESULTS = REPO_ROOT / "results"
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _block(name):
    m = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", README, re.S)
    assert m, f"README lacks the {name} block"
    return m.group(1)


@pytest.fixture(scope="module")
def store():
    if not (RESULTS / "results.csv").exists():
        pytest.skip("no committed results/ store")
    return ResultStore(RESULTS)


def test_results_hold_three_ok_seeds_for_every_cell_of_the_main_grid(store):
    df = store.frame()
    ids = {c.run_id(): c for c in grid("cpu")}
    main = df[df.run_id.isin(ids)]
    assert set(main.run_id) == set(ids), f"{len(set(ids) - set(main.run_id))} main-grid runs missing"
    assert (main.status == "ok").all()
    seeds = main.groupby(["dataset", "shots", "strategy_label"]).seed.nunique()
    assert (seeds >= 3).all()


def test_readme_and_results_blocks_equal_what_the_store_gives_now(store):
    """Every generated number in README.md and docs/results.md is the committed store's, recomputed now."""
    from tools.readme import compact_accuracy, findings, headline_meta, main_grid

    from ftlib.headline import literature

    df, side = main_grid(RESULTS)
    assert _block("findings") == findings(df)
    assert _block("headline").startswith(f"{headline_meta(df)}\n\n{compact_accuracy(df)}")
    results_md = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"<!-- literature -->\n{literature(df, side)}\n<!-- /literature -->" in results_md


def test_a_readme_cell_equals_numpy_over_the_seeds(store):
    from tools.readme import main_grid

    df, _ = main_grid(RESULTS)
    sub = df[(df.dataset == "hymenoptera") & (df.shots.astype(str) == "20") & (df.strategy == "full")]
    acc = sub.test_acc.to_numpy(float)
    assert len(acc) == 3
    cell = f"{acc.mean():.2f} ± {acc.std(ddof=1):.2f}"
    row = next(line for line in _block("headline").splitlines() if line.startswith("| full |"))
    header = next(line for line in _block("headline").splitlines() if line.startswith("| strategy |"))
    column = [c.strip() for c in header.split("|")].index("hymenoptera 20")
    assert [c.strip().strip("*") for c in row.split("|")][column] == cell


def test_main_grid_trains_every_pretrained_fine_tuning_cell_and_more_data_never_hurts(store):
    """The protocol's criteria on the committed store: three sizes per dataset; every pretrained gradient-trained
    run has its passes and training accuracy recorded and ran its whole schedule (no time budget cut it); every
    such cell's mean final training loss is <= 0.35 ln C; and no strategy is lower at a larger size by more
    than 2 SE."""
    import numpy as np

    from ftlib.headline import regimes
    from tools.readme import main_grid

    df, _ = main_grid(RESULTS)
    assert all(len(sizes) == 3 for sizes in regimes(df).values()), regimes(df)
    for (d, k, strategy), g in df.groupby(["dataset", df.shots.astype(str), "strategy"]):
        if strategy in ("partial", "full", "l2sp", "lp_ft"):
            frac = (g.final_train_loss.astype(float) / np.log(g.num_classes.astype(float))).mean()
            assert frac <= 0.35, (d, k, strategy, frac)
            assert (g.passes.astype(float) >= 14).all() and g.train_acc.astype(float).between(0, 1).all()
            assert not g.time_capped.astype(str).str.lower().eq("true").any()
    for (d, strategy), g in df.groupby(["dataset", "strategy"]):
        sizes = [k for k in regimes(df)[d] if (g.shots.astype(str) == k).any()]
        for few_k, many_k in zip(sizes, sizes[1:]):
            few, many = (g[g.shots.astype(str) == k].test_acc.to_numpy(float) for k in (few_k, many_k))
            se = np.sqrt(few.var(ddof=1) / len(few) + many.var(ddof=1) / len(many))
            assert many.mean() >= few.mean() - 2 * se, (d, strategy, few_k, many_k, few, many)


def test_readme_states_the_crossover_and_which_strategy_from_the_store(store):
    from tools.readme import crossover_block, main_grid, which_strategy

    df, _ = main_grid(RESULTS)
    assert _block("crossover") == crossover_block(df)
    assert _block("which") == which_strategy(df)
    results_md = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"<!-- crossover -->\n{crossover_block(df)}" in results_md


def test_compare_stores_a_store_with_itself_is_within_noise_and_a_shift_is_not(tmp_path):
    import shutil

    import pandas as pd

    from ftlib.headline import compare_stores

    t = compare_stores(RESULTS, RESULTS)
    assert len(t) == 48 and (t["diff"] == 0).all() and t.within_2se.all()
    shifted = tmp_path / "shifted"
    shutil.copytree(RESULTS, shifted)
    df = pd.read_csv(shifted / "results.csv")
    df.loc[df.strategy == "linear_probe", "test_acc"] -= 0.2  # 20 points: far outside any seed noise
    df.to_csv(shifted / "results.csv", index=False)
    t = compare_stores(RESULTS, shifted)
    probe = t.xs("linear_probe", level="strategy_label")
    assert (probe["diff"].round(6) == -0.2).all() and not probe.within_2se.any()
    assert t.drop(index="linear_probe", level="strategy_label").within_2se.all()


def test_compare_refuses_a_directory_without_a_store(tmp_path, capsys):
    from ftlib.__main__ import main

    assert main(["compare", str(RESULTS), str(tmp_path / "nowhere")]) == 2
    assert "no results store at" in capsys.readouterr().err


def _cells(rows):
    import pandas as pd

    recs = [{"dataset": d, "shots": k, "strategy": st, "status": "ok", "seed": i, "test_acc": a}
            for d, k, st, accs in rows for i, a in enumerate(accs)]
    return pd.DataFrame(recs)


def test_effects_judge_direction_and_size_apart():
    """A 37-point probe win is never reported as confirming a tie-sized effect; a tie within noise is."""
    import numpy as np

    from ftlib.headline import PUBLISHED, effects

    probe, full = [0.90, 0.92, 0.91], [0.53, 0.55, 0.54]
    df = _cells([("hymenoptera", 5, "linear_probe", probe), ("hymenoptera", 5, "full", full),
                 ("hymenoptera", 20, "linear_probe", [0.90, 0.92, 0.94]),
                 ("hymenoptera", 20, "full", [0.93, 0.90, 0.92]),
                 ("cifar10", 10, "linear_probe", [0.60, 0.61, 0.62]), ("cifar10", 10, "full", [0.64, 0.65, 0.66])])
    t = effects(df).set_index(["effect", "dataset", "shots"])
    big = t.loc[("a", "hymenoptera", "5")]
    se = np.sqrt(np.var(probe, ddof=1) / 3 + np.var(full, ddof=1) / 3)  # oracle: Welch by hand
    assert big.ours == pytest.approx(0.37) and big.se == pytest.approx(se)
    assert big.published == PUBLISHED["a"][3]
    assert big.direction.startswith("no") and big["size"] == "larger"
    tie = t.loc[("a", "hymenoptera", "20")]
    assert tie.direction == "holds (tie)" and tie["size"] == "comparable"
    cifar = t.loc[("a'", "cifar10", "10")]
    assert cifar.ours == pytest.approx(0.04) and cifar.direction == "holds" and cifar["size"] == "comparable"


def test_literature_prints_published_and_measured_sizes_side_by_side():
    from ftlib.headline import literature

    df = _cells([("fashion_mnist", 10, "linear_probe", [0.70, 0.72, 0.71]),
                 ("fashion_mnist", 10, "full", [0.60, 0.61, 0.59])])
    text = literature(df, {})
    row = next(line for line in text.splitlines() if line.startswith("| (b)"))
    assert "-11.0 ± 0.8" in row and "+25.0" in row and "| reversed |" in row
