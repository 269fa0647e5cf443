"""The published effects beside ours: direction and size are judged apart, and the markdown shows both."""
import numpy as np
import pandas as pd
import pytest

from ftlib.literature import PUBLISHED, effects, literature


def _cells(rows):
    recs = [{"dataset": d, "shots": k, "strategy": st, "status": "ok", "seed": i, "test_acc": a}
            for d, k, st, accs in rows for i, a in enumerate(accs)]
    return pd.DataFrame(recs)


def test_effects_judge_direction_and_size_apart():
    """A 37-point probe win is never reported as confirming a tie-sized effect; a tie within noise is."""
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
    df = _cells([("fashion_mnist", 10, "linear_probe", [0.70, 0.72, 0.71]),
                 ("fashion_mnist", 10, "full", [0.60, 0.61, 0.59])])
    text = literature(df, {})
    row = next(line for line in text.splitlines() if line.startswith("| (b)"))
    assert "-11.0 ± 0.8" in row and "+25.0" in row and "| reversed |" in row
