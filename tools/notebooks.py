"""Re-execute the notebooks in place (``./run notebooks``, ``python -m tools.notebooks [names]``) and strip volatile metadata."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TIMINGS = NOTEBOOKS.parent / "docs" / "notebook-timings.json"  # seconds per notebook in the cpu profile


def strip(nb) -> None:
    """Renumber execution counts 1..n and drop volatile metadata so diffs show only content changes.

    Counts are renumbered, not removed: nbval refuses a reference cell that has outputs but
    no execution count ("Unrun reference cell has outputs").
    """
    nb.metadata.pop("widgets", None)
    nb.metadata.get("language_info", {}).pop("version", None)
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = count
                out.get("metadata", {}).pop("execution", None)


def execute(path: Path, timeout: int = 3600) -> float:
    """Execute one notebook in place in ``$FTLIB_PROFILE`` (default ``cpu``); return seconds taken."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    ExecutePreprocessor(timeout=timeout, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(path.parent)}})
    strip(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def _find(name: str, every: list):
    """A notebook given as a path, a file name in notebooks/, or its number (``03``); None if none matches."""
    if Path(name).is_file():
        return Path(name)
    hits = [p for p in every if p.name == name or p.stem == name or p.name.split("-", 1)[0] == name]
    return hits[0] if len(hits) == 1 else None


def _stored_runs() -> int:
    """Rows in the committed store (``results/results.csv``): what a notebook's execution added is what it trained."""
    csv = NOTEBOOKS.parent / "results" / "results.csv"
    return max(0, sum(1 for _ in csv.open(encoding="utf-8")) - 1) if csv.exists() else 0


def execute_all(names=None) -> int:
    """Execute ``names`` (default: every ``notebooks/NN-*.ipynb``) in place, one after the other."""
    os.environ.setdefault("FTLIB_PROFILE", "cpu")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
    paths = [_find(n, every) for n in names] if names else every
    if None in paths:
        bad = [n for n, p in zip(names, paths) if p is None]
        print(f"no such notebook: {', '.join(bad)}; choose from {', '.join(p.name for p in every)} "
              "(a name, its number like 03, or a path)", file=sys.stderr)
        return 2
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {"seconds": {}}
    for p in paths:
        print(f"[ftlib] executing {p} (profile {os.environ['FTLIB_PROFILE']}) ...", flush=True)
        before = _stored_runs()
        seconds = execute(p)
        trained = _stored_runs() - before
        print(f"[ftlib] {p.name}: {seconds:.0f}s, {trained} runs trained into results/", flush=True)
        if os.environ["FTLIB_PROFILE"] == "cpu":  # the README's notebook table reads these (rounded)
            timings["seconds"][p.name] = round(seconds)
            timings.setdefault("trained", {})[p.name] = trained
            timings.update(date=datetime.date.today().isoformat(),
                           machine=f"{os.cpu_count()}-core {platform.machine()} {platform.system()}")
            TIMINGS.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(execute_all(sys.argv[1:]))
