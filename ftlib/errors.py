"""User-facing errors: one exception type whose message names the problem and the valid choices."""
from __future__ import annotations

import difflib


class FtlibError(ValueError):
    """A problem with the user's input or environment, explained in one line.

    The command line prints ``str(err)`` and exits with code 2; Python callers can
    catch it like any ``ValueError``.
    """


def unknown(kind: str, name: object, valid) -> FtlibError:
    """Build the error for an unknown name, listing the valid ones (closest first).

    >>> str(unknown("dataset", "hymenoptra", ["hymenoptera", "caltech101"]))
    "unknown dataset 'hymenoptra' (did you mean 'hymenoptera'?); valid: caltech101, hymenoptera"
    """
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return FtlibError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}")
