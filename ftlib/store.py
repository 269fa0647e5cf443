"""Where finished runs are kept: ``results.csv`` (one row per run) plus ``runs.jsonl`` (curves).

A results directory holds:

* ``results.csv`` -- every scalar key of every finished run, one row each; the union of
  columns across rows, an empty cell where a run has no such key (``hp_alpha`` on a
  ``full`` run);
* ``runs.jsonl`` -- the non-scalar part of each run, ``{"run_id", "curves",
  "block_distance"}`` one JSON object per line;
* ``.lock`` -- the file ``add`` locks so that several sweep processes can share a directory;
* ``.claims/<run_id>.lock`` -- locked (``flock``) by the process training that run, so that two
  benches on one store never train the same run; the OS drops the lock when its process dies.

A run that could not finish (its worker died, an error on a cluster) may be stored as a row
with ``status == "failed"`` and an ``error``: it does not count as done, so a rerun retries it,
and the rerun's record replaces it. ``frame()`` leaves failed rows out; ``failures()`` lists them.

A run counts as finished only once its CSV row exists: the sidecar line is written
first, so a run killed between the two writes leaves an orphan sidecar line that
readers ignore and that the rerun simply supersedes.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import tempfile
from pathlib import Path

from .errors import FtlibError

CSV_NAME = "results.csv"
SIDECAR_NAME = "runs.jsonl"
LOCK_NAME = ".lock"
CLAIMS_DIR = ".claims"
FAILED = "failed"
SIDECAR_KEYS = ("curves", "block_distance")
# Keys that stay strings even when they look like numbers: a hex run_id such as "1234"
# must not come back as an int, and versions such as "2.1" must not become floats.
STR_KEYS = frozenset({"run_id", "dataset", "backbone", "strategy", "strategy_label", "profile",
                      "status", "ftlib_version", "torch_version", "device", "timestamp", "error", "host",
                      "python_version", "timm_version", "numpy_version"})


class ResultStore:
    """A results directory that records each run the moment it ends and never twice.

    Args:
        path: The directory; created if missing. It must be writable, because a sweep
            should fail before hours of training rather than when the first run ends.

    Raises:
        FtlibError: If the directory cannot be created or written.

    Example:
        >>> import tempfile
        >>> store = ResultStore(tempfile.mkdtemp())
        >>> rec = {"run_id": "ab12", "dataset": "hymenoptera", "shots": "all", "seed": 0,
        ...        "status": "ok", "test_acc": 0.91, "curves": {"val_acc": [0.8, 0.9]}}
        >>> store.add(rec), store.add(rec)
        (True, False)
        >>> store.get("ab12")["curves"]["val_acc"], store.frame().shape
        ([0.8, 0.9], (1, 6))
    """

    def __init__(self, path):
        self.path = Path(path)
        self.csv_path = self.path / CSV_NAME
        self.sidecar_path = self.path / SIDECAR_NAME
        self.lock_path = self.path / LOCK_NAME
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # A real open, not os.access: root passes os.access on read-only mounts.
            with open(self.lock_path, "a"):
                pass
        except OSError as err:
            raise FtlibError(f"results directory {self.path} is not writable "
                             f"({err.strerror or err}); choose a writable results directory") from err

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # ---------------------------------------------------------------- writing

    def add(self, record: dict) -> bool:
        """Store one finished run; return False (and write nothing) if its run_id is stored.

        A stored failed row is no obstacle: the new record replaces it.

        Scalar keys go to ``results.csv``; ``curves`` and ``block_distance`` go to
        ``runs.jsonl``. The whole read-modify-write happens under an exclusive lock, and
        the CSV is replaced atomically, so a SIGKILL at any moment leaves the old or the
        new complete file.

        Args:
            record: The run's record; must hold a ``run_id``.

        Raises:
            FtlibError: If ``run_id`` is missing, a value is neither a scalar nor a known
                sidecar key, or the directory is not writable.
        """
        row, extra = _split(record)
        run_id = row["run_id"]
        try:
            with self._locked():
                header, rows = _read_csv(self.csv_path)
                if any(r.get("run_id") == run_id and r.get("status") != FAILED for r in rows):
                    return False
                rows = [r for r in rows if r.get("run_id") != run_id]  # a failed attempt, superseded
                if row.get("status") != FAILED:
                    self._append_sidecar({"run_id": run_id, **extra})
                header += [k for k in row if k not in header]
                rows.append(row)
                self._replace_csv(header, rows)
        except OSError as err:
            raise FtlibError(f"could not write results to {self.path} ({err.strerror or err})") from err
        return True

    def claim(self, run_id: str, wait: bool = False):
        """Claim ``run_id`` for this process before training it; None if a live process holds it.

        Returns an open file whose ``flock`` is the claim: ``close()`` it once the run is stored.
        A process that dies loses its claims with its file descriptors, so no claim outlives it.
        ``wait=True`` blocks until the claim is free instead of returning None.

        Example:
            >>> import tempfile
            >>> store = ResultStore(tempfile.mkdtemp())
            >>> mine = store.claim("ab12")
            >>> store.claim("ab12") is None  # held: another bench on this store skips the run
            True
            >>> mine.close()
        """
        try:
            folder = self.path / CLAIMS_DIR
            folder.mkdir(exist_ok=True)
            f = open(folder / f"{run_id}.lock", "a")
        except OSError as err:
            raise FtlibError(f"could not claim a run in {self.path} ({err.strerror or err})") from err
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.close()
            return None
        return f

    @contextlib.contextmanager
    def _locked(self):
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def _append_sidecar(self, obj: dict) -> None:
        with open(self.sidecar_path, "ab+") as f:
            # A run killed mid-line left no newline; start a fresh line so this
            # record is not glued onto the broken one.
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(obj) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    def _replace_csv(self, header: list, rows: list) -> None:
        # The temp file lives in the same directory so os.replace is a same-filesystem rename.
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".results-", suffix=".csv.tmp")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header, restval="")
                writer.writeheader()
                writer.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.csv_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ---------------------------------------------------------------- reading
    # Readers take no lock: os.replace means they see either the old or the new CSV.

    def done_ids(self) -> set:
        """The run_ids that have a row in ``results.csv`` (failed rows do not count)."""
        return {r["run_id"] for r in _read_csv(self.csv_path)[1] if r.get("status") != FAILED}

    def has(self, run_id: str) -> bool:
        """Whether ``run_id`` is stored and not failed (load-else-train: skip the run if so)."""
        return run_id in self.done_ids()

    def failures(self):
        """The failed rows (``status == "failed"``, with their ``error``) as a DataFrame; a rerun retries them."""
        return self.frame(failed=True)

    def get(self, run_id: str) -> dict | None:
        """The stored record of ``run_id`` with curves merged back, or None.

        Numbers come back as int/float, ``shots`` as an int or ``"all"``; keys that were
        empty in the CSV (another strategy's ``hp_`` keys) are left out.
        """
        for raw in _read_csv(self.csv_path)[1]:
            if raw.get("run_id") == run_id and raw.get("status") != FAILED:
                record = _parse_row(raw)
                extra = self.sidecar().get(run_id, {})
                return {**record, **{k: extra.get(k, {}) for k in SIDECAR_KEYS}}
        return None

    def frame(self, failed: bool = False):
        """``results.csv`` as a pandas DataFrame, one row per finished run (no rows if none).

        ``shots`` is an object column holding ints and the string ``"all"``; a key some
        runs lack is NaN in their rows. Failed rows are left out (``failed=True``: only them).
        """
        import pandas as pd  # deferred: the training loop imports this module too

        header, raw = _read_csv(self.csv_path)
        raw = [r for r in raw if (r.get("status") == FAILED) == failed]
        header = header if failed else [h for h in header if h != "error"]
        df = pd.DataFrame([_parse_row(r) for r in raw], columns=header)
        if "shots" in df:
            df["shots"] = df["shots"].astype(object)
        return df

    def sidecar(self) -> dict:
        """``runs.jsonl`` as ``{run_id: {"curves": ..., "block_distance": ...}}``.

        Lines whose run has no CSV row (killed between the two writes) and lines that
        are not valid JSON (a truncated last line) are ignored; for a run_id written
        twice the later line wins.
        """
        done = self.done_ids()
        out = {}
        if not self.sidecar_path.exists():
            return out
        with open(self.sidecar_path, encoding="utf-8") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict) and obj.get("run_id") in done:
                    out[obj["run_id"]] = {k: obj.get(k, {}) for k in SIDECAR_KEYS}
        return out


def _split(record: dict) -> tuple:
    """Split a record into its CSV row (strings) and its sidecar part."""
    if not record.get("run_id"):
        raise FtlibError("record has no 'run_id'; build records with the training loop's run()")
    row, extra = {}, {k: record.get(k) or {} for k in SIDECAR_KEYS}
    for key, value in record.items():
        if key in SIDECAR_KEYS:
            continue
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()  # numpy / torch scalars
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise FtlibError(f"record key {key!r} holds a {type(value).__name__}; only scalars "
                             f"go to {CSV_NAME} (non-scalars allowed: {', '.join(SIDECAR_KEYS)})")
        row[key] = _format(value)
    return row, extra


def _format(value) -> str:
    # str() of a float is its shortest round-tripping repr, so no precision is lost.
    return "" if value is None else str(value)


def _parse_row(raw: dict) -> dict:
    """Turn one CSV row of strings back into typed values, dropping empty cells."""
    return {k: v if k in STR_KEYS else _parse(v) for k, v in raw.items() if v != ""}


def _parse(text: str):
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    # "inf"/"nan" parse as floats, but so would a label named "Infinity"; keep only real spellings.
    return value if math.isfinite(value) or text.lower() in ("nan", "inf", "-inf") else text


def _read_csv(path: Path) -> tuple:
    """Header and rows (dicts of strings) of a CSV, or ``([], [])`` if it does not exist."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except FileNotFoundError:
        return [], []
