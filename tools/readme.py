"""Rewrite the README's generated blocks from the committed results store (``./run readme``).

The blocks between ``<!-- headline -->`` and ``<!-- /headline -->`` (and ``literature``) are
computed by ``ftlib.headline.headline`` from ``results/``, so the numbers a reader sees are the
store's means and standard deviations, never typed by hand.

Example:
    python -m tools.readme            # README.md from results/
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_blocks(text: str, blocks: dict) -> str:
    """``text`` with each ``<!-- name -->...<!-- /name -->`` block replaced by ``blocks[name]``.

    Example:
        >>> write_blocks("a\\n<!-- x -->\\nold\\n<!-- /x -->\\n", {"x": "new\\n"})
        'a\\n<!-- x -->\\nnew\\n<!-- /x -->\\n'
    """
    for name, block in blocks.items():
        pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no <!-- {name} --> ... <!-- /{name} --> block to rewrite")
        text = pattern.sub(lambda m: m.group(1) + block + m.group(2), text)
    return text


def update_readme(readme=ROOT / "README.md", results_dir=ROOT / "results") -> None:
    """Rewrite the generated blocks of the README in place, with the headline plot and the store's summary."""
    import matplotlib.pyplot as plt

    from ftlib.bench import grid
    from ftlib.headline import PLOT, headline
    from ftlib.report import plot_acc_vs_shots, write_summary
    from ftlib.store import ResultStore

    store = ResultStore(results_dir)
    df = store.frame()
    main = {c.run_id() for c in grid("cpu")}  # the main grid only, not notebook extras
    fig = plot_acc_vs_shots(df[df.run_id.isin(main)])
    fig.savefig(store.path / PLOT, dpi=110)
    plt.close(fig)
    write_summary(store.path, run_ids=main)
    text = Path(readme).read_text(encoding="utf-8")
    Path(readme).write_text(write_blocks(text, headline(results_dir)), encoding="utf-8")


if __name__ == "__main__":
    update_readme(*sys.argv[1:])
    sys.exit(0)
