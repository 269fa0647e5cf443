"""The checksummed cache-file format: atomic writes, verified reads, content digests.

Every file ftlib caches (decoded datasets, converted weights, probe features) is written by
``atomic_save`` as ``{"ftlib_cache": CACHE_FORMAT, "sha256": digest(payload), "payload": ...}`` and
read back by ``verified_load``, which discards a damaged or foreign file instead of using it. A saved
model (``ftlib.checkpoint``) carries the same ``digest`` of its weights in its own envelope.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .errors import FtlibError

CACHE_FORMAT = 1  # the layout atomic_save writes: {"ftlib_cache": 1, "sha256": digest(payload), "payload": ...}
# a temporary file untouched this long has no writer left (a writer appends to it continuously)
STALE_TMP_SECONDS = 600
NO_SPACE_HINT = "free some space or set FTLIB_DATA to another folder"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_tmp(folder, max_age: float = STALE_TMP_SECONDS) -> list:
    """Remove ``.*.tmp`` files that killed writers left in ``folder``; return their paths.

    A file is stale when the process named in it (``atomic_save`` writes ``.<name>.<pid>.<random>.tmp``)
    is gone, or when nobody has written to it for ``max_age`` seconds.
    """
    removed, now = [], time.time()
    for f in Path(folder).glob(".*.tmp"):
        parts = f.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        try:
            stale = (pid is not None and pid != os.getpid() and not _alive(pid)) or now - f.stat().st_mtime > max_age
            if stale:
                f.unlink()
                removed.append(f)
        except OSError:  # another process removed or renamed it first
            pass
    return removed


def digest(obj) -> str:
    """sha256 of ``obj``'s content: tensors and arrays by dtype, shape and bytes; containers in order.

    >>> import torch
    >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.zeros(2)}) != digest({"w": torch.ones(2)})
    True
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h, obj) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype.str}{obj.shape}|".encode())
        h.update(repr(obj.tolist()).encode("utf-8", "surrogateescape") if obj.dtype.hasobject
                 else np.ascontiguousarray(obj).reshape(-1).view(np.uint8))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}|".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}|".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"R{obj!r}|".encode("utf-8", "surrogateescape"))


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file under this process's umask (0644 under umask 022)."""
    try:  # Linux names the umask without changing it
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)  # elsewhere: read it by setting it, and put it straight back
        os.umask(umask)
    return 0o666 & ~umask


def atomic_save(obj, path: Path, checksum: bool = True, hint: str = NO_SPACE_HINT) -> None:
    """``torch.save`` to a unique temporary file beside ``path``, then rename it into place.

    Readers see the old file or the new one, never half of one, and two processes writing the
    same cache entry at once (``bench --jobs``) each rename a complete file of their own.
    With ``checksum`` (every cache file) the file holds ``obj`` with its ``digest``, and
    ``verified_load`` reads it back; a failed write names the file and ``hint``.

    Example:
        >>> atomic_save({"w": torch.zeros(2)}, path)  # doctest: +SKIP
        >>> verified_load(path)  # doctest: +SKIP
        {'w': tensor([0., 0.])}
    """
    import torch

    path = Path(path)
    if checksum:
        obj = {"ftlib_cache": CACHE_FORMAT, "sha256": digest(obj), "payload": obj}
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:
        raise FtlibError(f"cannot write {path} ({e.strerror or e}); {hint}") from None
    out = None
    try:
        with os.fdopen(fd, "wb") as f:
            out = _Writer(f)
            torch.save(obj, out)
        os.chmod(tmp, default_file_mode())  # mkstemp creates 0600; a saved file is as readable as open() makes it
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        # torch turns a failed write (disk full) into a RuntimeError about positions: report the OSError
        err = e if isinstance(e, OSError) else getattr(out, "error", None)
        if err is not None:
            raise FtlibError(f"cannot write {path} ({err.strerror or err}); {hint}") from None
        raise


class _Writer:
    """A file that remembers the OSError of a failed write (torch.save reports only its own error)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        self.f.flush()


def verified_load(path, **load_kwargs):
    """Read a file ``atomic_save`` wrote; None when it is missing, or damaged (then it is named in a
    warning and deleted, so the caller rebuilds it): never a half-written or altered cache entry.

    Always ``torch.load(weights_only=True)``: a cache holds tensors and plain Python values only, so a
    pickle planted at a cache path (anyone who can write a shared ``FTLIB_DATA``) runs no code; it is
    refused as damaged. Other ``load_kwargs`` go to ``torch.load``.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    load_kwargs = {"map_location": "cpu", **load_kwargs, "weights_only": True}
    try:
        with warnings.catch_warnings():  # a foreign pickle makes torch warn first; the warning below names it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            blob = torch.load(path, **load_kwargs)
        if not isinstance(blob, dict) or "ftlib_cache" not in blob:
            problem = None  # not damaged, but unverifiable
        elif blob.get("ftlib_cache") != CACHE_FORMAT:
            problem = f"cache format {blob.get('ftlib_cache')!r}, this ftlib reads {CACHE_FORMAT}"
        elif blob.get("sha256") != digest(blob.get("payload")):
            problem = "checksum mismatch: its bytes changed after it was written"
        else:
            return blob["payload"]
    except Exception as e:  # truncated or overwritten bytes fail in the zip reader or the unpickler
        problem = f"unreadable: {type(e).__name__}"
    if problem is None:
        warnings.warn(f"cache file {path} has no checksum (written by an older ftlib, or not an ftlib cache "
                      "file), so it cannot be verified; discarding it and rebuilding", stacklevel=2)
    else:
        warnings.warn(f"cache file {path} is damaged ({problem}); discarding it and rebuilding", stacklevel=2)
    try:
        path.unlink()
    except OSError:
        pass
    return None
