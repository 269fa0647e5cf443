"""``--strategy auto``: the one-standard-error rule, a held-out part of the training images, never the test split."""
import json
import math
import subprocess
import sys

import pytest
import torch

import ftlib
from ftlib.auto import CANDIDATES, choose_strategy, holdout_split, one_standard_error, standard_error
from helpers import LITE0
from test_train_cli import ROOT, folder


def cand(name, acc, seconds, n=40):
    return {"strategy": name, "held_out_acc": acc, "se": standard_error(acc, n), "seconds": seconds}


def test_one_standard_error_breaks_ties_by_the_preference_order_only_within_one_se():
    close = [cand("linear_probe", 0.80, 1.0), cand("full", 0.85, 30.0)]  # se(0.85, 40) ~ 0.055
    win, why = one_standard_error(close)
    assert win == 0 and "within one standard error" in why and "full" in why
    tie = [cand("linear_probe", 0.84, 1.0), cand("lp_ft", 0.82, 30.0), cand("full", 0.86, 30.0)]
    assert one_standard_error(tie)[0] == 1  # LP-FT first in the tie order, though neither best nor cheapest
    assert one_standard_error([cand("lp_ft", 0.70, 30.0), cand("linear_probe", 0.90, 1.0)])[0] == 1
    clear = [cand("linear_probe", 0.60, 1.0), cand("full", 0.90, 30.0)]
    assert one_standard_error(clear)[0] == 1
    diverged = [cand("linear_probe", 0.60, 1.0), cand("full", math.nan, 0.5)]
    assert one_standard_error(diverged)[0] == 0
    with pytest.raises(ftlib.FtlibError, match="every candidate strategy diverged"):
        one_standard_error([cand("full", math.nan, 1.0)])


def test_standard_error_is_binomial_with_agresti_coull():
    p = (0.5 * 100 + 2) / 104
    assert standard_error(0.5, 100) == pytest.approx(math.sqrt(p * (1 - p) / 100))
    assert standard_error(1.0, 10) > 0  # 10 of 10 right is not certainty


def test_holdout_is_stratified_disjoint_and_drawn_from_train_only():
    ds = ftlib.load_dataset("hymenoptera", shots=10, seed=0, resolution=32)
    ds.test = None  # never read
    inner = holdout_split(ds, seed=0)
    assert inner.train.counts() == {"ants": 7, "bees": 7} and inner.test.counts() == {"ants": 3, "bees": 3}
    a, b = set(inner.train.indices.tolist()), set(inner.test.indices.tolist())
    assert not a & b and a | b == set(ds.train.indices.tolist())
    with pytest.raises(ftlib.FtlibError, match="at least 2"):
        holdout_split(ftlib.load_dataset("hymenoptera", shots=1, seed=0, resolution=32), seed=0)


class _Poisoned:
    """A test split that fails any read: choosing must not touch it."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


def test_choosing_never_reads_the_test_split():
    ds = ftlib.load_dataset("hymenoptera", shots=4, seed=0, resolution=32)
    ds.test = _Poisoned()
    ev = choose_strategy(ds, backbone=LITE0, seed=0, final_steps=2)
    assert [c["strategy"] for c in ev["candidates"]] == list(CANDIDATES)
    assert ev["winner"] in CANDIDATES and ev["why"]
    assert ev["held_out_images"] == 2 and ev["inner_train_images"] == 6
    assert all(0 <= c["held_out_acc"] <= 1 and c["seconds"] > 0 for c in ev["candidates"])
    steps = {c["steps"] for c in ev["candidates"] if c["strategy"] != "linear_probe"}
    assert len(steps) == 1 and steps.pop() >= 1  # one short schedule for every fine-tuning candidate


def test_train_auto_stores_the_evidence_and_refits_the_winner_on_every_labelled_image(tmp_path):
    data, out = folder(tmp_path, per_class=5), tmp_path / "m"
    res = subprocess.run([sys.executable, "-m", "ftlib", "train", f"imagefolder:{data}", "--strategy", "auto",
                          "--resolution", "32", "--profile", "smoke", "--passes", "2", "--test-fraction", "0.2",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    ev = m["auto"]
    assert ftlib.parse_strategy(ev["winner"]).label == m["strategy"]
    assert [c["strategy"] for c in ev["candidates"]] == list(CANDIDATES)
    assert ev["inner_train_images"] + ev["held_out_images"] == m["data"]["train_images"] == 8
    assert ev["cost_ratio"] > 1 and ev["refit_seconds"] == pytest.approx(m["budget"]["train_seconds"])
    assert f"auto: chose {ev['winner']}" in res.stdout
    assert torch.load(out / "model.pt", weights_only=True)["meta"]["strategy"] == ftlib.parse_strategy(ev["winner"]).name
