"""ResultStore: a finished run is written once, atomically, and read back exactly."""
import math
import multiprocessing as mp
import os

import pytest

from ftlib.errors import FtlibError
from ftlib.store import ResultStore


def record(i, strategy="full", shots="all", status="ok", **hp):
    """A synthetic record shaped like the training loop's, with run_id ``r<i>``."""
    return {
        "run_id": f"r{i:03d}", "dataset": "toy", "backbone": "tiny", "strategy": strategy,
        "strategy_label": strategy, "shots": shots, "seed": i, "resolution": 32, "epochs": 3,
        "batch_size": 8, "profile": "smoke", **{f"hp_{k}": v for k, v in hp.items()},
        "status": status, "val_acc": 0.5 + i / 1000,
        "test_acc": 0.25 + i / 1000 if status == "ok" else math.nan,
        "train_seconds": 1.5, "trainable_params": 1000 + i, "peak_mem_mb": 12.25,
        "ftlib_version": "0.1", "torch_version": "2.4.1", "device": "cpu",
        "timestamp": "2024-01-01T00:00:00",
        "curves": {"train_loss": [1.0, 0.5, 0.25], "val_acc": [0.4, 0.5, 0.5 + i / 1000]},
        "block_distance": {"stem": 0.0, "blocks.0": 0.01 * i, "head": 1.0},
    }


def test_add_once_and_skip_duplicates(tmp_path):
    store = ResultStore(tmp_path)
    assert store.add(record(1)) is True
    assert store.add(record(1)) is False
    assert store.add(record(2, strategy="l2sp", alpha=0.01)) is True
    assert store.done_ids() == {"r001", "r002"} and store.has("r001") and not store.has("r999")
    assert len(store.frame()) == 2
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2
    # Union of columns: the full run has an empty hp_alpha cell.
    assert "hp_alpha" in store.frame().columns
    assert "hp_alpha" not in store.get("r001")


def test_round_trip_types_curves_and_block_distance(tmp_path):
    store = ResultStore(tmp_path)
    rec = record(7, strategy="l2sp", shots=5, lr=3e-4, alpha=0.1, k=2)
    store.add(rec)
    store.add(record(8, status="diverged"))
    got = store.get("r007")
    assert got == rec  # every scalar type, curves and block order survive the CSV
    assert list(got["block_distance"]) == ["stem", "blocks.0", "head"]
    assert math.isnan(store.get("r008")["test_acc"])
    assert store.get("nope") is None


def test_numeric_looking_run_id_stays_a_string(tmp_path):
    store = ResultStore(tmp_path)
    store.add({**record(1), "run_id": "0123"})
    assert store.done_ids() == {"0123"} and store.get("0123")["run_id"] == "0123"


def test_frame_shots_holds_ints_and_all(tmp_path):
    store = ResultStore(tmp_path)
    assert store.frame().empty and len(store.frame()) == 0
    store.add(record(1, shots=5))
    store.add(record(2, shots="all"))
    shots = store.frame()["shots"]
    assert shots.dtype == object and list(shots) == [5, "all"] and type(shots[0]) is int


def test_sidecar_ignores_orphans_and_truncated_line(tmp_path):
    store = ResultStore(tmp_path)
    store.add(record(1))
    with open(tmp_path / "runs.jsonl", "a") as f:
        f.write('{"run_id": "orphan", "curves": {}, "block_distance": {}}\n')
        f.write('{"run_id": "r002", "curves": {"val_a')  # killed mid-line
    assert set(store.sidecar()) == {"r001"}
    # The next add starts a fresh line instead of gluing onto the broken one.
    store.add(record(2))
    assert set(store.sidecar()) == {"r001", "r002"}
    assert store.get("r002")["curves"] == record(2)["curves"]


def test_failed_replace_leaves_old_csv_intact(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.add(record(1))
    before = (tmp_path / "results.csv").read_bytes()

    def killed(*args):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(FtlibError):
        store.add(record(2, strategy="l2sp", alpha=0.5))
    monkeypatch.undo()
    assert (tmp_path / "results.csv").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert store.done_ids() == {"r001"} and set(store.sidecar()) == {"r001"}
    # The rerun of the lost run is stored normally.
    assert store.add(record(2)) and store.done_ids() == {"r001", "r002"}


def _add_many(path, start):
    store = ResultStore(path)
    for i in range(start, start + 20):
        # Alternate strategies so the header changes under concurrency too.
        store.add(record(i, strategy="l2sp", alpha=0.1) if i % 2 else record(i))


def test_concurrent_adds_lose_no_rows(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(tmp_path, s)) for s in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = ResultStore(tmp_path)
    assert len(store.frame()) == 40 and len(store.done_ids()) == 40
    assert len(store.sidecar()) == 40


def test_unwritable_directory_names_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(FtlibError, match="a_file"):
        ResultStore(blocker / "results")


def test_non_scalar_value_is_refused(tmp_path):
    with pytest.raises(FtlibError, match="hp_layers"):
        ResultStore(tmp_path).add({**record(1), "hp_layers": [1, 2]})


def test_a_failed_row_is_not_done_is_left_out_of_frame_and_is_replaced_by_the_rerun(tmp_path):
    store = ResultStore(tmp_path)
    failed = {"run_id": "r001", "dataset": "toy", "strategy": "full", "strategy_label": "full", "shots": "all",
              "seed": 1, "status": "failed", "error": "WorkerCrashedError: the worker died"}
    assert store.add(failed) is True
    assert not store.has("r001") and store.done_ids() == set() and store.get("r001") is None
    assert len(store.frame()) == 0 and list(store.failures().error) == ["WorkerCrashedError: the worker died"]
    assert store.sidecar() == {} and not (tmp_path / "runs.jsonl").exists()  # nothing to draw
    assert store.add({**failed, "error": "again"}) is True  # a second failure updates the error
    assert list(store.failures().error) == ["again"]
    assert store.add(record(1)) is True  # the rerun's record replaces the failed row
    assert store.has("r001") and len(store.failures()) == 0 and "error" not in store.frame()
    assert store.get("r001") == record(1)
    assert store.add(failed) is False  # a late failure of a retried task never hides a finished run
    assert store.get("r001") == record(1)
