"""The committed results/ store: the main grid is complete and meets the protocol, and every generated number in
README.md and docs/results.md is the store's, recomputed, never typed by hand."""
import re

import pytest

from ftlib.bench import main_grid, main_grid_ids
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
    ids = main_grid_ids()
    main = main_grid(store.frame())
    assert set(main.run_id) == ids, f"{len(ids - set(main.run_id))} main-grid runs missing"
    assert (main.status == "ok").all()
    seeds = main.groupby(["dataset", "shots", "strategy_label"]).seed.nunique()
    assert (seeds >= 3).all()


def test_readme_and_results_blocks_equal_what_the_store_gives_now(store):
    """Every generated number in README.md and docs/results.md is the committed store's, recomputed now."""
    from tools.readme import compact_accuracy, findings, headline_meta, load_main_grid

    from ftlib.literature import literature

    df, side = load_main_grid(RESULTS)
    assert _block("findings") == findings(df)
    assert _block("headline").startswith(f"{headline_meta(df)}\n\n{compact_accuracy(df)}")
    results_md = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"<!-- literature -->\n{literature(df, side)}\n<!-- /literature -->" in results_md


def test_a_readme_cell_equals_numpy_over_the_seeds(store):
    from ftlib.report import cell

    acc = cell(main_grid(store.frame()), "hymenoptera", 20, "full").test_acc.to_numpy(float)
    assert len(acc) == 3
    text = f"{acc.mean():.2f} ± {acc.std(ddof=1):.2f}"
    row = next(line for line in _block("headline").splitlines() if line.startswith("| full |"))
    header = next(line for line in _block("headline").splitlines() if line.startswith("| strategy |"))
    column = [c.strip() for c in header.split("|")].index("hymenoptera 20")
    assert [c.strip().strip("*") for c in row.split("|")][column] == text


def test_main_grid_trains_every_pretrained_fine_tuning_cell_and_more_data_never_hurts(store):
    """The protocol's criteria on the committed store: three sizes per dataset; every pretrained gradient-trained
    run has its passes and training accuracy recorded and ran its whole schedule (no time budget cut it); every
    such cell's mean final training loss is <= 0.35 ln C; and no strategy is lower at a larger size by more
    than 2 SE."""
    import numpy as np

    from ftlib.report import LOSS_CRITERION, loss_over_ln_c, regimes

    df = main_grid(store.frame())
    assert all(len(sizes) == 3 for sizes in regimes(df).values()), regimes(df)
    for (d, k, strategy), g in df.groupby(["dataset", df.shots.astype(str), "strategy"]):
        if strategy in ("partial", "full", "l2sp", "lp_ft"):
            frac = loss_over_ln_c(g).mean()
            assert frac <= LOSS_CRITERION, (d, k, strategy, frac)
            assert (g.passes.astype(float) >= 14).all() and g.train_acc.astype(float).between(0, 1).all()
            assert not g.time_capped.astype(str).str.lower().eq("true").any()
    for (d, strategy), g in df.groupby(["dataset", "strategy"]):
        sizes = [k for k in regimes(df)[d] if (g.shots.astype(str) == k).any()]
        for few_k, many_k in zip(sizes, sizes[1:]):
            few, many = (g[g.shots.astype(str) == k].test_acc.to_numpy(float) for k in (few_k, many_k))
            se = np.sqrt(few.var(ddof=1) / len(few) + many.var(ddof=1) / len(many))
            assert many.mean() >= few.mean() - 2 * se, (d, strategy, few_k, many_k, few, many)


def test_readme_states_the_crossover_and_which_strategy_from_the_store(store):
    from tools.readme import crossover_block, load_main_grid, which_strategy

    df, _ = load_main_grid(RESULTS)
    assert _block("crossover") == crossover_block(df)
    assert _block("which") == which_strategy(df)
    results_md = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert f"<!-- crossover -->\n{crossover_block(df)}" in results_md


def test_compare_stores_a_store_with_itself_is_within_noise_and_a_shift_is_not(store):
    from ftlib.report import compare_stores

    df = main_grid(store.frame())
    t = compare_stores(df, df)
    assert len(t) == 48 and (t["diff"] == 0).all() and t.within_2se.all()
    shifted = df.assign(test_acc=df.test_acc.where(df.strategy != "linear_probe", df.test_acc - 0.2))
    t = compare_stores(df, shifted)  # 20 points: far outside any seed noise
    probe = t.xs("linear_probe", level="strategy_label")
    assert (probe["diff"].round(6) == -0.2).all() and not probe.within_2se.any()
    assert t.drop(index="linear_probe", level="strategy_label").within_2se.all()


def test_compare_refuses_a_directory_without_a_store(tmp_path, capsys):
    from ftlib.__main__ import main

    assert main(["compare", str(RESULTS), str(tmp_path / "nowhere")]) == 2
    assert "no results store at" in capsys.readouterr().err
