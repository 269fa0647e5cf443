"""Where the runs of a grid execute: here, in local worker processes, or on a Ray cluster.

An executor takes run configs and yields ``(config, record)`` pairs as runs finish; the caller
(``bench``) is the only process that writes the results store. A task is sent nothing but its
``RunConfig``: data and weights are read where it runs, from that machine's own cache
(``FTLIB_DATA``), and every task seeds itself from its config, so a run's result does not
depend on where it ran (its thread count and device do count, and each record names them).

Example:
    >>> from ftlib.bench import bench, grid
    >>> bench(grid("smoke", datasets=["hymenoptera"]), "/tmp/res",
    ...       executor=RayExecutor(cpus_per_run=1))  # doctest: +SKIP
"""
from __future__ import annotations

import datetime
import logging
import multiprocessing
import os
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

from .errors import FtlibError, unknown
from .runs import RunConfig, run
from .store import FAILED

EXECUTORS = ("local", "ray")
# A directory: each run writes ``<run_id>.<pid>`` into it as it starts, so an operator (or a test)
# can find the process training a given run, wherever the executor put it.
PIDS_ENV = "FTLIB_RUN_PIDS"
RAY_MISSING = ("--executor ray needs Ray, which is not installed here: pip install 'ftlib[ray]' "
               "(or pip install 'ray>=2.50'); --executor local needs nothing more")


def execute(cfg: RunConfig, threads: int | None = None, device=None, progress: bool = False) -> dict:
    """One run, in whatever process the executor chose: its thread count, then ``run`` (which seeds every
    generator from the config, so a worker that ran other configs before gives the same result as a fresh one).
    """
    if threads:
        torch.set_num_threads(threads)
    pids = os.environ.get(PIDS_ENV)
    if pids:
        with open(os.path.join(pids, f"{cfg.run_id()}.{os.getpid()}"), "w") as f:
            f.write(f"{socket.gethostname()}\n")
    return run(cfg, device=device, progress=progress)


def failed_record(cfg: RunConfig, error: str) -> dict:
    """The row of a run that could not finish: its config, ``status == "failed"`` and the error.

    A failed row does not count as done (``ResultStore.has``), so rerunning the grid retries it.
    """
    return {
        "run_id": cfg.run_id(), "dataset": cfg.dataset, "backbone": cfg.backbone, "strategy": cfg.strategy.name,
        "strategy_label": cfg.strategy.label, "shots": cfg.shots, "seed": cfg.seed,
        "resolution": cfg.resolution, "profile": cfg.profile, "status": FAILED,
        "error": " ".join(str(error).split())[:500], "host": socket.gethostname(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


class LocalExecutor:
    """Runs on this machine: in this process (``jobs=1``), or in ``jobs`` worker processes.

    With workers, torch's threads are split between them and each worker takes the next
    pending run. An error in a run stops the grid with its traceback; finished runs stay stored.
    """

    name = "local"

    def __init__(self, jobs: int = 1):
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise FtlibError(f"jobs must be a positive integer, got {jobs!r}")
        self.jobs = jobs

    def where(self) -> str:
        return f" in {self.jobs} worker processes" if self.jobs > 1 else ""

    @property
    def in_process(self) -> bool:
        return self.jobs == 1

    def run(self, configs, progress: bool = True):
        """Yield ``(config, record)`` as runs finish. In process, ``configs`` is consumed one at a time."""
        if self.jobs == 1:
            for cfg in configs:
                yield cfg, execute(cfg, progress=progress)
            return
        threads = max(1, torch.get_num_threads() // self.jobs)
        ctx = multiprocessing.get_context("spawn")  # fork after torch has started its thread pools can hang
        with ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_start_worker) as pool:
            pending = {pool.submit(execute, cfg, threads): cfg for cfg in configs}
            try:
                while pending:
                    ready, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in ready:
                        yield pending.pop(fut), fut.result()  # a worker's exception is raised here
            finally:
                pool.shutdown(wait=False, cancel_futures=True)


# ``--jobs 2`` on 2 cores: 1.10x (docs/performance.md, The main job); side by side each run is ~1.6x
# slower, the two cores sharing one memory bus. A run's float rounding depends on its thread count
# (``torch_threads`` is recorded), so the default stays one process.


def _start_worker() -> None:
    try:  # Linux: die with the parent (a killed bench leaves no orphan training on)
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RayExecutor:
    """Runs as Ray tasks: on a local Ray started here, or on a running cluster.

    Args:
        address: A cluster to join (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``); None:
            ``$RAY_ADDRESS`` if set, else start Ray on this machine with ``num_cpus`` CPUs.
        cpus_per_run: CPUs each run reserves; torch's thread count in the task is set to it.
        gpus_per_run: GPUs each run reserves (fractions share a GPU); runs with a GPU train on
            CUDA, each in a fresh worker process (``max_calls=1``), so no CUDA state carries over.
        max_retries: How often Ray reruns a task whose worker died; then the run is stored as failed.
        num_cpus: CPUs of a Ray started here (default: this machine's).

    A task that raises is not retried (the same config raises again): it is stored as failed,
    the grid goes on, and rerunning the grid retries it.
    """

    name = "ray"
    in_process = False

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0.0,
                 max_retries: int = 3, num_cpus: int | None = None):
        if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) or cpus_per_run < 1:
            raise FtlibError(f"cpus per run must be a positive integer, got {cpus_per_run!r}")
        if isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, (int, float)) or not gpus_per_run >= 0:
            raise FtlibError(f"gpus per run must be a number >= 0 (fractions share a GPU), got {gpus_per_run!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise FtlibError(f"max retries must be an integer >= 0, got {max_retries!r}")
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, float(gpus_per_run)
        self.max_retries, self.num_cpus = max_retries, num_cpus
        self.ray = import_ray()
        if address:  # before any work: a wrong address is reported in seconds
            check_reachable(address)

    def where(self) -> str:
        gpus = f", {self.gpus_per_run:g} GPU" if self.gpus_per_run else ""
        return f" as Ray tasks ({self.cpus_per_run} CPU{gpus} each)"

    def run(self, configs, progress: bool = False):
        """Yield ``(config, record)`` as tasks finish; a task that failed yields a failed record."""
        ray = self.ray
        started = self._connect()
        pending = {}
        try:
            self._check_resources()
            # max_calls is a decorator argument only (.options() refuses it), and a GPU does not imply it
            task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=self.max_retries,
                              max_calls=1 if self.gpus_per_run else 0)(_ray_task)
            device = "cuda" if self.gpus_per_run else "cpu"
            pending = {task.remote(cfg, self.cpus_per_run, device): cfg for cfg in configs}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cfg = pending.pop(ref)
                    try:
                        rec = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        rec = failed_record(cfg, _describe(err))
                    yield cfg, rec
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Join or start Ray unless this process already has; True if this call did."""
        ray = self.ray
        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            check_reachable(address)  # Ray itself retries an address where nothing listens for minutes
        quiet = {"logging_level": logging.WARNING, "configure_logging": True}
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=self.num_cpus or _cpu_count(), include_dashboard=False, **quiet)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError, ray.exceptions.RayError) as err:
            where = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
            raise FtlibError(
                f"could not {where} ({_describe(err)}); check the address (host:port of the head, 'auto' for "
                "one on this machine, or ray://host:10001) and, for a cluster with token authentication, "
                "RAY_AUTH_MODE=token with the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token") from err
        return True

    def _check_resources(self) -> None:
        """Refuse runs larger than the whole cluster: such tasks would wait forever."""
        have = self.ray.cluster_resources()
        for what, need, flag in (("CPU", self.cpus_per_run, "--cpus-per-run"),
                                 ("GPU", self.gpus_per_run, "--gpus-per-run")):
            if need > have.get(what, 0):
                raise FtlibError(f"{flag} {need:g} is more than the Ray cluster's {have.get(what, 0):g} {what}s; "
                                 f"choose {flag} <= {have.get(what, 0):g}")


CONNECT_SECONDS = 5.0


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Refuse a Ray address (``host:port`` or ``ray://host:port``) where nothing accepts a TCP connection.

    ``auto`` and ``local`` are left to Ray. Example:

        >>> check_reachable("127.0.0.1:1", timeout=1)  # doctest: +SKIP
        FtlibError: nothing answers at 127.0.0.1:1 (Connection refused) ...
    """
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit():
        raise FtlibError(f"Ray address {address!r} is not host:port, ray://host:port or 'auto' "
                         "(e.g. --address 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise FtlibError(f"nothing answers at {host}:{port} ({why}, within {timeout:g} s): check that the Ray head "
                         "runs there (ray start --head on it) and the port, or leave --address out to start Ray "
                         "on this machine") from None


def _ray_task(cfg: RunConfig, threads: int, device: str) -> dict:
    return execute(cfg, threads=threads, device=device)


def _describe(err: BaseException) -> str:
    """One line for a failed task: the run's own exception when it raised, else Ray's reason."""
    cause = getattr(err, "cause", None)
    err = cause if isinstance(cause, BaseException) else err
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def import_ray():
    """The ``ray`` module, or an ``FtlibError`` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise FtlibError(RAY_MISSING) from err
    return ray


def make_executor(name: str = "local", jobs: int = 1, **ray_options):
    """The executor the command line asks for; ``ray_options`` go to ``RayExecutor``.

    Example:
        >>> make_executor("local", jobs=2).where()
        ' in 2 worker processes'
    """
    if name not in EXECUTORS:
        raise unknown("executor", name, EXECUTORS)
    given = sorted(k for k, v in ray_options.items() if v is not None)
    if name == "local":
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise FtlibError(f"{flags} apply to --executor ray only; add --executor ray or leave them out")
        return LocalExecutor(jobs)
    if jobs != 1:
        raise FtlibError("--jobs applies to --executor local only; with --executor ray use --cpus-per-run")
    return RayExecutor(**{k: v for k, v in ray_options.items() if v is not None})
