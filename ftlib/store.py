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

A row whose data changed under it (an ``imagefolder:`` whose files are no longer those it was
trained on) is kept with ``status == "stale"``: like a failed row it is not done, left out of
``frame()``, and replaced by the rerun.

Reading is defensive: a row whose field count differs from the header's, or whose ``status``,
``seed``, ``shots`` or (for an ok run) ``test_acc`` does not parse, is skipped and named in a
warning (its run counts as not done and is trained again); the next write moves it to
``results.skipped.csv``. A file that is not UTF-8, or lacks the columns every ftlib row has, is
one ``FtlibError`` naming the file and what to do.

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
import re
import tempfile
import warnings
from pathlib import Path

from .errors import FtlibError
from .cache import default_file_mode

CSV_NAME = "results.csv"
SKIPPED_NAME = "results.skipped.csv"
SIDECAR_NAME = "runs.jsonl"
LOCK_NAME = ".lock"
CLAIMS_DIR = ".claims"
FAILED = "failed"
STALE = "stale"
NOT_DONE = frozenset({FAILED, STALE})  # rows kept for the record that do not count as finished runs
# the columns every row ftlib writes has (finished and failed runs alike)
LAYOUT = ("run_id", "dataset", "shots", "seed", "strategy_label", "status")
SIDECAR_KEYS = ("curves", "block_distance")
# Keys that stay strings even when they look like numbers: a hex run_id such as "1234"
# must not come back as an int, and versions such as "2.1" must not become floats.
STR_KEYS = frozenset({"run_id", "dataset", "backbone", "strategy", "strategy_label", "profile",
                      "status", "ftlib_version", "torch_version", "device", "timestamp", "error", "host",
                      "python_version", "timm_version", "numpy_version", "folder", "folder_fingerprint"})


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
        ...        "strategy_label": "full", "status": "ok", "test_acc": 0.91, "curves": {"val_acc": [0.8, 0.9]}}
        >>> store.add(rec), store.add(rec)
        (True, False)
        >>> store.get("ab12")["curves"]["val_acc"], store.frame().shape
        ([0.8, 0.9], (1, 7))

    An existing directory that cannot be written is opened for reading only (``compare`` of a
    read-only store works); ``add`` and ``claim`` then raise an ``FtlibError`` that names it.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.csv_path = self.path / CSV_NAME
        self.sidecar_path = self.path / SIDECAR_NAME
        self.lock_path = self.path / LOCK_NAME
        self.read_only = None  # the OSError that makes the directory read-only, if any
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FtlibError(f"results directory {self.path} is not writable "
                             f"({err.strerror or err}); choose a writable results directory") from err
        try:  # a real open, not os.access: root passes os.access on read-only mounts
            with open(self.lock_path, "a"):
                pass
        except OSError as err:
            self.read_only = err

    def _writable(self) -> None:
        err = self.read_only
        if err is not None:
            raise FtlibError(f"results directory {self.path} is not writable "
                             f"({err.strerror or err}); choose a writable results directory") from None

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
        self._writable()
        try:
            with self._locked():
                header, rows, skipped = _read_csv(self.csv_path, with_skipped=True)
                if any(r.get("run_id") == run_id and r.get("status") not in NOT_DONE for r in rows):
                    return False
                rows = [r for r in rows if r.get("run_id") != run_id]  # a failed or stale attempt, superseded
                if row.get("status") not in NOT_DONE:
                    self._append_sidecar({"run_id": run_id, **extra})
                header += [k for k in row if k not in header]
                rows.append(row)
                self._set_aside(skipped)
                self._replace_csv(header, rows)
        except OSError as err:
            raise FtlibError(f"could not write results to {self.path} ({err.strerror or err})") from err
        return True

    def retire_changed(self, current: dict) -> int:
        """Mark as stale the finished rows of folder datasets whose files are no longer those they trained on.

        ``current`` maps a dataset name (``imagefolder:<path>``) to the ``folder_fingerprint`` its runs
        are keyed on now; a row of that name with another fingerprint (or none) gets ``status == "stale"``:
        kept in ``results.csv``, left out of tables, and its config trained anew. Returns how many.
        """
        if not current or not self.csv_path.exists():
            return 0
        self._writable()
        with self._locked():
            header, rows, skipped = _read_csv(self.csv_path, with_skipped=True)
            changed = 0
            for r in rows:
                want = current.get(r.get("dataset"))
                if want is not None and r.get("status") not in NOT_DONE and r.get("folder_fingerprint") != want:
                    r["status"] = STALE
                    changed += 1
            if changed:
                self._set_aside(skipped)
                self._replace_csv(header, rows)
        return changed

    def check_profile(self, profiles) -> None:
        """Refuse runs of another profile than the store's: a table cell would average different budgets."""
        mine = sorted({r.get("profile") for r in _read_csv(self.csv_path)[1]
                       if r.get("status") not in NOT_DONE and r.get("profile")})
        other = sorted(set(profiles) - set(mine))
        if mine and other:
            raise FtlibError(f"results directory {self.path} holds runs of profile {', '.join(mine)}; runs of "
                             f"profile {', '.join(other)} would be averaged with them in one table: give them "
                             f"another --out (the default is data/results/<profile>)")

    def _set_aside(self, skipped: list) -> None:
        """Append malformed rows (their fields as read) to ``results.skipped.csv`` before a rewrite drops them."""
        if not skipped:
            return
        with open(self.path / SKIPPED_NAME, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(fields for _, fields, _ in skipped)
        warnings.warn(f"moved {len(skipped)} malformed row(s) of {self.csv_path} to {self.path / SKIPPED_NAME}",
                      stacklevel=3)

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
        self._writable()
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
            os.chmod(tmp, default_file_mode())  # mkstemp creates 0600
            os.replace(tmp, self.csv_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ---------------------------------------------------------------- reading
    # Readers take no lock: os.replace means they see either the old or the new CSV.

    def done_ids(self) -> set:
        """The run_ids that have a row in ``results.csv`` (failed, stale and malformed rows do not count)."""
        return {r["run_id"] for r in _read_csv(self.csv_path)[1] if r.get("status") not in NOT_DONE}

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
            if raw.get("run_id") == run_id and raw.get("status") not in NOT_DONE:
                record = _parse_row(raw)
                extra = self.sidecar().get(run_id, {})
                return {**record, **{k: extra.get(k, {}) for k in SIDECAR_KEYS}}
        return None

    def frame(self, failed: bool = False):
        """``results.csv`` as a pandas DataFrame, one row per finished run (no rows if none).

        ``shots`` is an object column holding ints and the string ``"all"``; a key some
        runs lack is NaN in their rows. Failed and stale rows are left out (``failed=True``: only the failed).
        """
        import pandas as pd  # deferred: the training loop imports this module too

        header, raw = _read_csv(self.csv_path)
        raw = [r for r in raw if r.get("status") != STALE and (r.get("status") == FAILED) == failed]
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
        with open(self.sidecar_path, "rb") as f:
            for line in f:  # bytes: one line of foreign bytes costs that line, not the file
                try:
                    obj = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
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


_STATUS = re.compile(r"[a-z][a-z_-]*")


def _problem(row: dict) -> str | None:
    """Why a row (dict of strings) cannot be a stored run, or None when it is well formed."""
    status = row.get("status", "")
    if not row.get("run_id"):
        return "no run_id"
    if not _STATUS.fullmatch(status):
        return f"status {status!r}"
    if not re.fullmatch(r"-?\d+", row.get("seed", "")):
        return f"seed {row.get('seed')!r}"
    if not (row.get("shots") == "all" or row.get("shots", "").isdigit()):
        return f"shots {row.get('shots')!r}"
    if status == "ok" and "test_acc" in row:
        try:
            float(row["test_acc"])
        except ValueError:
            return f"test_acc {row['test_acc']!r}"
    return None


def _read_csv(path: Path, with_skipped: bool = False) -> tuple:
    """Header and well-formed rows (dicts of strings) of a results CSV, or ``([], [])`` if it does not exist.

    Malformed rows are left out and named in a warning (``with_skipped``: also returned, as
    ``(line number, fields, why)``). A file that is not UTF-8 or lacks ``LAYOUT`` is an ``FtlibError``.
    """
    what = "move it aside (the runs it held are then trained again) or restore it from a copy"
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            lines = [(reader.line_num, fields) for fields in reader]
    except FileNotFoundError:
        return ([], [], []) if with_skipped else ([], [])
    except UnicodeDecodeError as e:
        raise FtlibError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); ftlib "
                         f"writes UTF-8: convert it (e.g. iconv -f latin1 -t utf-8) or {what}") from None
    except csv.Error as e:
        raise FtlibError(f"{path} is not a readable CSV file ({e}); {what}") from None
    missing = [c for c in LAYOUT if c not in header]
    if header and missing:
        raise FtlibError(f"{path} lacks the column(s) {', '.join(missing)} that every row ftlib writes has, so it "
                         f"is not (or no longer) an ftlib results file; {what}")
    rows, skipped = [], []
    for line, fields in lines:
        if not fields:  # a blank line
            continue
        row = dict(zip(header, fields))
        why = (f"{len(fields)} fields, the header has {len(header)}" if len(fields) != len(header)
               else _problem(row))
        if why:
            skipped.append((line, fields, why))
        else:
            rows.append(row)
    if skipped:
        named = "; ".join(f"line {n}: {why}" for n, _, why in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(f"{path}: skipped {len(skipped)} malformed row(s) ({named}); their runs count as not done "
                      f"and are trained again", stacklevel=3)
    return (header, rows, skipped) if with_skipped else (header, rows)
