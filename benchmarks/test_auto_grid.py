"""The auto-grid benchmark covers every cell and seed of the main grid once, and resumes by its rule."""
import json

from benchmarks import auto_grid
from ftlib.bench import grid


def test_one_choice_per_cell_and_seed_of_the_main_grid():
    cells = auto_grid.cells("cpu")
    want = {(c.dataset, str(c.shots), c.seed) for c in grid("cpu")}
    assert len(cells) == len(want) == 27
    assert {(c.dataset, str(c.shots), c.seed) for c in cells} == want


def test_a_stored_choice_is_skipped_only_under_the_same_rule(tmp_path):
    cfg = auto_grid.cells("cpu", datasets=["hymenoptera"], seeds=[0])[0]
    store = tmp_path / "auto.jsonl"
    store.write_text(json.dumps({**auto_grid._key(cfg), "winner": "linear_probe"}) + "\n"
                     + json.dumps({**auto_grid._key(cfg), "candidate_schedule": 0.25, "winner": "full"}) + "\n")
    assert [r["winner"] for r in auto_grid.read(store)] == ["linear_probe", "full"]
    assert auto_grid.read(tmp_path / "missing.jsonl") == []
    other = auto_grid.cells("cpu", datasets=["hymenoptera"], seeds=[1])[0]
    assert auto_grid.pending([cfg, other], auto_grid.read(store)) == [other]  # the first row answers cfg
    assert auto_grid.pending([cfg], auto_grid.read(store)[1:]) == [cfg]  # a row of another rule does not


def test_rechoosing_applies_the_current_tie_order_to_the_stored_scores_without_training():
    cfg = auto_grid.cells("cpu", datasets=["hymenoptera"], seeds=[0])[0]
    cands = [{"strategy": s, "held_out_acc": acc, "se": 0.04, "seconds": sec}
             for s, acc, sec in (("linear_probe", 0.90, 1.0), ("lp_ft", 0.92, 30.0), ("partial:k=2", 0.8, 9.0),
                                 ("full", 0.70, 30.0))]
    old = {**auto_grid._key(cfg), "preference": ["linear_probe"], "winner": "linear_probe", "candidates": cands}
    del old["candidate_strategies"]  # a row written before the key named them: read from its candidates
    other = {**old, "candidate_schedule": 0.25}  # scores made under another schedule are not reused
    new, kept = auto_grid.rechoose([old, other])
    assert new["winner"] == "lp_ft" and new["preference"] == auto_grid.RULE["preference"]
    assert auto_grid.pending([cfg], [new]) == [] and auto_grid.pending([cfg], [old]) == [cfg]
    assert kept["winner"] == "linear_probe" and "preference" in kept and kept["preference"] == ["linear_probe"]
