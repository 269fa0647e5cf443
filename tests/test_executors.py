"""Executors: the grid gives the same records here and on Ray, survives killed workers and drivers,
and two benches sharing one store train each run once.

One Ray head (``ray start --head``, 2 CPUs) serves the whole module: this process joins it as a
driver for the in-process tests, and command-line benches join it with ``--address``. Token
authentication uses a token made here (``RAY_AUTH_TOKEN``), so nothing depends on, or writes,
``~/.ray/auth_token``.
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ftlib.bench import bench, grid
from ftlib.executors import PIDS_ENV, RayExecutor
from ftlib.page import write_summary
from ftlib.store import ResultStore
from helpers import rows, sigkill_bench_after_first_row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--profile", "smoke", "--dataset", "hymenoptera", "--strategies", "partial:k=0"]  # not --quiet: reads stdout
TIMING = {"train_seconds", "timestamp", "peak_mem_mb"}


def quiet(*args):
    pass


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "ftlib", "bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def pid_files(folder: Path) -> list:
    """``(run_id, pid)`` of every run started so far (executors.PIDS_ENV)."""
    return [tuple(p.name.split(".")) for p in folder.iterdir()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A 2-CPU Ray head started for this module and joined by this process; stopped by its process group."""
    tmp = Path(tempfile.mkdtemp(prefix="ftray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    pids = tmp / "pids"
    pids.mkdir()
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        mp.setenv(PIDS_ENV, str(pids))  # the head's workers inherit it
        mp.delenv("RAY_ADDRESS", raising=False)
        import ray  # after RAY_AUTH_MODE is set: Ray reads it on import. Installed by requirements.txt: not skipped
        ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
        with open(tmp / "head.log", "w") as log:
            proc = subprocess.Popen(
                [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={tmp}",
                 "--object-store-memory=100000000", "--include-dashboard=false", "--disable-usage-stats",
                 "--block"], process_group=0, stdout=log, stderr=subprocess.STDOUT)
        try:
            address = f"127.0.0.1:{port}"
            deadline = time.time() + 120
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.time() < deadline, (tmp / "head.log").read_text()
                    time.sleep(0.2)
            ray.init(address=address, logging_level="WARNING")
            yield {"address": address, "pids": pids}
        finally:
            ray.shutdown()
            os.killpg(proc.pid, signal.SIGTERM)  # never `ray stop`: it stops every Ray on the machine
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


def kill_first_start(pids: Path, run_ids: set, killed: list):
    """Background: SIGKILL the first process that starts one of ``run_ids`` (a worker dying mid-run)."""
    seen = set(pid_files(pids))

    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            for rid, pid in set(pid_files(pids)) - seen:
                if rid in run_ids:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append((rid, pid))
                    return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_local_and_ray_give_the_same_records_apart_from_timings(head, tmp_path):
    import torch

    configs = grid("smoke", datasets=["hymenoptera"], strategies=["full"])  # every weight trains: the strictest
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # a run's rounding depends on its thread count: both sides use 2
    try:
        here = bench(configs, tmp_path / "local", log=quiet, progress=False)
    finally:
        torch.set_num_threads(threads)
    there = bench(configs, tmp_path / "ray", log=quiet, executor=RayExecutor(cpus_per_run=2))
    assert {c.run_id() for c in configs} == here.done_ids() == there.done_ids()
    for c in configs:
        a, b = here.get(c.run_id()), there.get(c.run_id())
        assert a.keys() == b.keys()
        assert {"host", "python_version", "timm_version", "numpy_version", "torch_threads", "device"} <= a.keys()
        assert a["torch_threads"] == b["torch_threads"] == 2
        for key in a.keys() - TIMING:
            assert same(a[key], b[key]), key


def same(a, b) -> bool:
    """Equal, numbers to 1e-6 (nan equals nan), through the dicts and lists of curves and distances."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) or isinstance(b, float):
        return b == pytest.approx(a, abs=1e-6, nan_ok=True)
    return a == b


def test_a_worker_killed_mid_run_is_retried_and_each_run_is_stored_once(head, tmp_path):
    configs = grid("smoke", datasets=["hymenoptera"], strategies=["partial:k=0"], seeds=[1, 2])
    ids = {c.run_id() for c in configs}
    killed = []
    watcher = kill_first_start(head["pids"], ids, killed)
    before = set(pid_files(head["pids"]))
    store = bench(configs, tmp_path / "res", log=quiet, executor=RayExecutor(cpus_per_run=1, max_retries=2))
    watcher.join(1)
    assert len(killed) == 1
    started = [rid for rid, _ in set(pid_files(head["pids"])) - before]
    assert started.count(killed[0][0]) == 2  # the killed run started again, in another worker
    got = rows(store.path)
    assert sorted(r["run_id"] for r in got) == sorted(ids) and {r["status"] for r in got} == {"ok"}


def test_without_retries_a_killed_run_is_stored_as_failed_and_a_rerun_fills_it(head, tmp_path):
    configs = grid("smoke", datasets=["hymenoptera"], strategies=["partial:k=0"], seeds=[3])
    rid = configs[0].run_id()
    killed = []
    watcher = kill_first_start(head["pids"], {rid}, killed)
    store = bench(configs, tmp_path / "res", log=quiet, executor=RayExecutor(max_retries=0))
    watcher.join(1)
    assert killed and not store.has(rid) and len(store.frame()) == 0
    failed = store.failures()
    assert list(failed.run_id) == [rid] and failed.error.iloc[0]  # the row says why
    write_summary(store.path)
    assert "1 runs failed and are left out" in (store.path / "summary.md").read_text()
    bench(configs, store.path, log=quiet, executor=RayExecutor(max_retries=0))
    assert store.has(rid) and len(store.failures()) == 0
    assert [r["run_id"] for r in rows(store.path)] == [rid]  # the success replaced the failed row


def test_a_killed_driver_loses_nothing_and_the_rerun_trains_only_the_missing_runs(head, tmp_path):
    """The first driver joins the module's head with --address; the rerun starts Ray itself."""
    out = str(tmp_path / "res")
    args = [*TINY, "--seeds", "4,5,6", "--executor", "ray", "--cpus-per-run", "1", "--out", out]
    sigkill_bench_after_first_row([*args, "--address", head["address"]], out)
    kept = {r["run_id"] for r in rows(out)}
    assert 1 <= len(kept) <= 3
    before = set(pid_files(head["pids"]))
    again = cli(*args)  # no --address: this time the bench starts a Ray of its own
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} already in" in again.stdout and f"{3 - len(kept)} to run" in again.stdout
    trained = {rid for rid, _ in set(pid_files(head["pids"])) - before}
    got = [r["run_id"] for r in rows(out)]
    assert len(got) == len(set(got)) == 3 and trained == set(got) - kept


def test_two_benches_on_one_store_train_each_run_once(tmp_path):
    out, pids = str(tmp_path / "res"), tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, PIDS_ENV: str(pids)}
    args = [sys.executable, "-m", "ftlib", "bench", *TINY, "--seeds", "7,8", "--out", out]
    procs = [subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    started = [rid for rid, _ in pid_files(pids)]
    got = [r["run_id"] for r in rows(out)]
    assert len(got) == 2 and sorted(started) == sorted(got)  # every run trained exactly once


def test_a_claim_is_exclusive_and_dies_with_its_process(tmp_path):
    store = ResultStore(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from ftlib.store import ResultStore; "
                               f"c = ResultStore({str(tmp_path)!r}).claim('r1'); print(c is not None, flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "True"
    assert store.claim("r1") is None and store.claim("r2") is not None
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert store.claim("r1") is not None  # the OS released the dead process's claim


def test_ray_missing_is_a_one_line_error_naming_the_extra(tmp_path):
    argv = ["bench", *TINY, "--out", str(tmp_path / "o"), "--executor", "ray"]
    code = f"import sys; sys.modules['ray'] = None; from ftlib.__main__ import main; sys.exit(main({argv!r}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "pip install 'ftlib[ray]'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any work


@pytest.mark.parametrize("args, message", [
    (["--executor", "dask"], "invalid choice: 'dask'"),
    (["--cpus-per-run", "2"], "--cpus-per-run apply to --executor ray only"),
    (["--executor", "ray", "--jobs", "2"], "--jobs applies to --executor local only"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be a number >= 0"),
    (["--executor", "ray", "--max-retries", "x"], "--max-retries must be a whole number >= 0"),
])
def test_bad_executor_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    from ftlib.__main__ import main

    assert main(["bench", *TINY, "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before any work


def test_compare_reports_the_thread_counts_of_both_stores(tmp_path, capsys):
    from ftlib.__main__ import main

    configs = grid("cpu")[:3]
    for name, threads in (("a", 2), ("b", 1)):
        store = ResultStore(tmp_path / name)
        for c in configs:
            store.add({"run_id": c.run_id(), "dataset": c.dataset, "shots": c.shots, "seed": c.seed,
                       "strategy_label": c.strategy.label, "status": "ok", "test_acc": 0.5, "torch_threads": threads})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "torch threads per run, reference: 2" in out and "torch threads per run, rerun: 1" in out
