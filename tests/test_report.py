"""Report tables: summary numbers equal hand-computed numpy values."""
import math

import numpy as np
import pandas as pd
import pytest
from helpers import ACC, records

from ftlib import report
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
