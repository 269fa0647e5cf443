"""Report tables: summary numbers equal hand-computed numpy values; comparisons judge gaps against seed noise."""
import math

import numpy as np
import pandas as pd
import pytest
from helpers import ACC, records

from ftlib import report
from ftlib.errors import FtlibError
from ftlib.store import ResultStore


@pytest.fixture
def df():
    return pd.DataFrame(records()).drop(columns=["curves", "block_distance"])


def test_summary_matches_numpy(df):
    table = report.summary_table(df, formatted=False)
    assert table.index.names == ["dataset", "shots", "strategy_label"]
    # shots ascending with "all" last; within shots, strategies in teaching order
    assert list(table.index) == [("toy", 5, "partial(k=1)"), ("toy", 5, "full"),
                                 ("toy", "all", "partial(k=1)"), ("toy", "all", "full")]
    for (shots, label), accs in ACC.items():
        row = table.loc[("toy", shots, label)]
        assert row["test_acc_mean"] == pytest.approx(np.mean(accs))
        assert row["n_seeds"] == len(accs)
        if len(accs) > 1:
            assert row["test_acc_std"] == pytest.approx(np.std(accs, ddof=1))
        else:
            assert math.isnan(row["test_acc_std"])
    full5 = table.loc[("toy", 5, "full")]
    assert full5["diverged"] == 1 and full5["train_seconds"] == pytest.approx(20.0)
    assert full5["val_acc_mean"] == pytest.approx(np.mean(ACC[(5, "full")]) + 0.01)
    assert full5["trainable_params"] == 1000 and full5["peak_mem_mb"] == 50.0
    assert "test_acc" not in table


def test_formatted_cells_and_markdown(df):
    table = report.summary_table(df)
    accs = ACC[(5, "full")]
    cell = f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}"
    assert table.loc[("toy", 5, "full"), "test_acc"] == cell
    assert table.loc[("toy", "all", "partial(k=1)"), "test_acc"] == "0.880 ± –"
    md = report.to_markdown(table)
    assert "### toy, shots=5" in md and "### toy, shots=all" in md
    assert md.index("shots=5") < md.index("shots=all")
    assert cell in md and "| partial(k=1) |" in md
    assert report.to_markdown(report.summary_table(df.iloc[:0])) == "_No finished runs._\n"


def test_summary_of_a_store_frame_equals_summary_of_records(tmp_path, df):
    store = ResultStore(tmp_path)
    for r in records():
        store.add(r)
    pd.testing.assert_frame_equal(report.summary_table(store.frame()), report.summary_table(df),
                                  check_dtype=False)


def test_block_distance_table_averages_seeds_per_label():
    df = pd.DataFrame({"run_id": ["a", "b", "c"], "strategy_label": ["full", "full", "l2sp"]})
    side = {"a": {"block_distance": {"stem": 0.1, "blocks.0": 0.4, "head": 2.0}},
            "b": {"block_distance": {"stem": 0.3, "blocks.0": 0.2, "head": 1.0}},
            "c": {"block_distance": {"stem": 0.05, "blocks.0": 0.1, "head": 1.5}}}
    table = report.block_distance_table(df, side)
    assert list(table.index) == ["stem", "blocks.0", "head"] and list(table.columns) == ["full", "l2sp"]
    assert table.loc["stem", "full"] == pytest.approx(0.2)
    assert table.loc["blocks.0", "full"] == pytest.approx(0.3)
    assert table.loc["head", "l2sp"] == pytest.approx(1.5)


def test_block_distance_table_missing_sidecar_gives_nan():
    df = pd.DataFrame({"run_id": ["a", "z"], "strategy_label": ["full", "l2sp"]})
    table = report.block_distance_table(df, {"a": {"block_distance": {"stem": 0.1}}})
    assert table.loc["stem", "full"] == pytest.approx(0.1) and math.isnan(table.loc["stem", "l2sp"])


def test_loss_over_ln_c_is_per_run_and_budget_table_averages_it():
    d = pd.DataFrame({"dataset": "toy", "shots": 5, "strategy": "full", "strategy_label": "full", "status": "ok",
                      "num_classes": [2, 2, 4], "final_train_loss": [0.1, 0.3, 0.2]})
    frac = report.loss_over_ln_c(d)
    assert frac.tolist() == pytest.approx([0.1 / math.log(2), 0.3 / math.log(2), 0.2 / math.log(4)])
    assert math.isnan(report.loss_over_ln_c(d.assign(num_classes=1)).iloc[0])  # one class: no chance level
    assert report.loss_over_ln_c(d.drop(columns="final_train_loss")).isna().all()
    row = report.budget_table(d.iloc[:2]).loc[("toy", 5, "full")]
    assert row["loss / ln C"] == pytest.approx(0.2 / math.log(2))
    assert row["worst seed"] == pytest.approx(0.3 / math.log(2))


def test_cell_takes_the_finished_runs_of_one_cell(df):
    full5 = report.cell(df, "toy", "5", "full")
    assert sorted(full5.test_acc) == pytest.approx(sorted(ACC[(5, "full")]))  # the diverged run is left out
    assert report.accuracies(df, "toy", 5, "full").tolist() == pytest.approx(ACC[(5, "full")])  # seed order
    assert report.regimes(df) == {"toy": ["5", "all"]}


def test_compare_stores_a_frame_with_itself_is_within_noise_and_a_shift_is_not(df):
    t = report.compare_stores(df, df)
    assert len(t) == 4 and (t["diff"] == 0).all()
    assert t.within_2se.sum() == 3 and not t.loc[("toy", "all", "partial(k=1)")].within_2se  # one seed: no SE
    shifted = df.assign(test_acc=df.test_acc.where(df.strategy != "full", df.test_acc - 0.2))
    t = report.compare_stores(df, shifted)
    full = t.xs("full", level="strategy_label")
    assert (full["diff"].round(6) == -0.2).all() and not full.within_2se.any()
    assert t.xs("partial(k=1)", level="strategy_label").loc[("toy", 5)].within_2se
    with pytest.raises(FtlibError, match="finished runs in both"):
        report.compare_stores(df, df.iloc[:0])


def test_crossover_judges_each_gap_at_two_standard_errors():
    rows = [{"dataset": "toy", "shots": k, "strategy": s, "status": "ok", "seed": i, "test_acc": a}
            for k, s, accs in ((5, "linear_probe", [0.80, 0.82, 0.81]), (5, "full", [0.70, 0.72, 0.71]),
                               (20, "linear_probe", [0.85, 0.86, 0.84]), (20, "full", [0.95, 0.96, 0.94]))
            for i, a in enumerate(accs)]
    t = report.crossover(pd.DataFrame(rows), strategies=("full",))
    assert t.verdict.tolist() == ["behind", "ahead"] and t.gap.tolist() == pytest.approx([-0.1, 0.1])
    assert report.overtakes(t) == {("toy", "full"): "20"}
