"""The benchmark runner end to end: store, resume after SIGKILL, summary files, and bad input."""
import math
import os
import subprocess
import sys

import pytest
from helpers import rows, sigkill_bench_after_first_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--profile", "smoke", "--dataset", "hymenoptera"]


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "ftlib", "bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_bench_writes_store_summary_plots_and_skips_finished_runs(tmp_path):
    out = str(tmp_path / "res")
    first = cli(*TINY, "--strategies", "linear_probe,full", "--out", out)
    assert first.returncode == 0, first.stderr
    got = rows(out)
    assert len(got) == 2 and {r["strategy"] for r in got} == {"linear_probe", "full"}
    for name in ("summary.md", "acc_vs_shots.png", "acc_vs_time.png", "block_distance.png", "learning_curves.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    assert "linear_probe" in open(os.path.join(out, "summary.md")).read()
    again = cli(*TINY, "--strategies", "linear_probe,full", "--out", out)
    assert again.returncode == 0
    assert "0 to run" in again.stdout
    assert rows(out) == got  # nothing recomputed, nothing duplicated
    quiet = cli(*TINY, "--strategies", "linear_probe,full", "--out", out, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""  # --quiet: warnings and errors only


def test_sigkill_mid_grid_loses_nothing_and_resumes_to_identical_metrics(tmp_path):
    killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
    args = [*TINY, "--strategies", "linear_probe,partial:k=0,full", "--seeds", "0"]
    sigkill_bench_after_first_row([*args, "--out", killed], killed)
    assert 1 <= len(rows(killed)) <= 3
    assert cli(*args, "--out", killed).returncode == 0
    assert cli(*args, "--out", clean).returncode == 0
    a = {r["run_id"]: r for r in rows(killed)}
    b = {r["run_id"]: r for r in rows(clean)}
    assert len(rows(killed)) == len(a) == 3 and a.keys() == b.keys()
    for rid in a:
        for key in ("val_acc", "test_acc"):
            x, y = float(a[rid][key]), float(b[rid][key])  # val_acc is NaN where a run reads no val split
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= 1e-6, (rid, key, x, y)


def test_diverged_run_is_stored_and_the_grid_goes_on(tmp_path):
    out = str(tmp_path / "res")
    res = cli(*TINY, "--strategies", "full:lr=1e20,linear_probe", "--out", out)
    assert res.returncode == 0, res.stderr
    status = {r["strategy"]: r["status"] for r in rows(out)}
    assert status == {"full": "diverged", "linear_probe": "ok"}


@pytest.mark.parametrize("args, message", [
    (["--dataset", "hymenoptra"], "unknown dataset 'hymenoptra' (did you mean 'hymenoptera'?); valid:"),
    (["--strategies", "ful"], "unknown strategy 'ful' (did you mean 'full'?); valid:"),
    (["--strategies", "partial:q=1"], "unknown parameter of partial 'q'"),
    (["--backbone", "timm/not_a_model"], "unknown timm model 'not_a_model'"),
    (["--backbone", "resnet18"], "backbone names look like 'timm/<model>' or 'torchvision/<model>'"),
    (["--profile", "laptop"], "unknown profile 'laptop'; valid: cpu, gpu, smoke"),
    (["--strategies", ","], "--strategies is empty"),
    (["--seeds", ""], "--seeds is empty"),
    (["--shots", "500"], "shots=500 is more than class 'bees' has for training"),
    (["--shots", "-3"], "shots must be 'all' or a positive integer"),
    (["--seeds", "0,one"], "--seeds must be integers >= 0, got 'one'"),
    (["--passes", "x"], "--passes must be a number > 0"),
    (["--epochs", "3"], "unrecognized arguments: --epochs 3"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    res = cli(*TINY, "--out", str(tmp_path / "o"), *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_unwritable_out_is_one_line_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = cli(*TINY, "--out", str(blocker / "results"))
    assert res.returncode == 2 and str(blocker) in res.stderr and "Traceback" not in res.stderr


def test_jobs_run_each_config_once_in_workers_and_resume(tmp_path):
    out = str(tmp_path / "par")
    args = [*TINY, "--strategies", "linear_probe,partial:k=0,full", "--seeds", "0", "--out", out]
    first = cli(*args, "--jobs", "2")
    assert first.returncode == 0, first.stderr
    assert "3 to run in 2 worker processes" in first.stdout
    got = rows(out)
    assert len(got) == len({r["run_id"] for r in got}) == 3 and {r["status"] for r in got} == {"ok"}
    threads = max(1, int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                        capture_output=True, text=True).stdout) // 2)
    assert {int(r["torch_threads"]) for r in got} == {threads}  # the workers' share, recorded per run
    again = cli(*args, "--jobs", "2")
    assert again.returncode == 0 and "0 to run" in again.stdout and rows(out) == got
    assert cli(*args[:-2], "--jobs", "0", "--out", out).returncode == 2  # a bad --jobs is an input error


def test_without_strategies_the_cli_runs_the_profiles_grid(monkeypatch, tmp_path):
    """``--strategies`` left out means the profile's grid: the gpu profile's LP-FT runs at lr 3e-4."""
    from ftlib import __main__ as entry, bench
    from ftlib.store import ResultStore

    seen = {}

    def fake_bench(configs, out, **kw):  # capture the grid instead of training it
        seen.setdefault("labels", []).append(sorted({c.strategy.label for c in configs}))
        return ResultStore(tmp_path)

    monkeypatch.setattr(bench, "bench", fake_bench)
    monkeypatch.setattr(bench, "summarise", lambda store: None)
    base = ["bench", "--dataset", "fashion_mnist", "--seeds", "0", "--out", "unused"]
    assert entry.main([*base, "--profile", "gpu"]) == 0
    assert entry.main([*base, "--profile", "cpu"]) == 0
    assert entry.main([*base, "--profile", "gpu", "--strategies", "lp_ft"]) == 0
    gpu, cpu, given = seen["labels"]
    assert gpu == ["full", "l2sp", "linear_probe", "lp_ft(lr=0.0003)", "partial(k=2)", "scratch"]
    assert cpu == ["full", "l2sp", "linear_probe", "lp_ft", "partial(k=2)", "scratch"]
    assert given == ["lp_ft"]
