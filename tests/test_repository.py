"""The repository speaks of the product: no development history in tracked text files.

How the project was built (who worked when, on which machine lent for a day, for which ticket) belongs
in git history; README, docs, notebooks, code and help texts say what ftlib is and what was measured.
"""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEXT = (".py", ".md", ".ipynb", ".cfg", ".toml", ".txt", ".sh")
# assembled from pieces so that this file does not match itself
SESS, SIT, BORROW = "sess" + "ion", "sit" + "ting", "bor" + "rowed"
WORDS = [SESS, "lent (NVIDIA|H200|GPU)", "issue " + "item", "previous " + SESS, SIT, BORROW]
HISTORY = re.compile(r"\b(" + "|".join(WORDS) + r")\b", re.IGNORECASE)
PYTEST_SCOPE = 'scope="' + WORDS[0] + '"'  # a pytest fixture scope, not history


def tracked_text_files() -> list:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / f for f in out.splitlines() if f.endswith(TEXT) or f == "run"]


def history_hits(path: Path) -> list:
    """``(line number, line)`` of every history word in ``path``; CHANGELOG.md's version headings are allowed."""
    hits = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if path.name == "CHANGELOG.md" and line.startswith("## "):
            continue
        if HISTORY.search(line.replace(PYTEST_SCOPE, "")):
            hits.append((i, line.strip()[:160]))
    return hits


def test_the_pattern_matches_history_and_spares_ordinary_words():
    for text in (f"in a later {SESS.title()}", "on a le" + "nt H200", "issue " + "item 6",
                 f"the previous {SESS}'s run", f"this {SIT}", f"{BORROW.title()} hardware"):
        assert HISTORY.search(text), text
    for text in ("silently", "talent", "excellent" + " GPU", f"{SESS}s_total", "bitting", "a lent list"):
        assert not HISTORY.search(text), text


def test_no_development_history_in_tracked_text_files():
    files = tracked_text_files()
    assert any(f.name == "README.md" for f in files)
    hits = {str(f.relative_to(ROOT)): h for f in files if f.is_file() for h in [history_hits(f)] if h}
    assert not hits, "development history in files (rewrite as what was measured, when, where, how):\n" + "\n".join(
        f"{f}:{i}: {line}" for f, h in hits.items() for i, line in h)


def test_links_in_readme_and_docs_resolve_inside_the_repository():
    """No link leaves the repository for a file readers do not have (such as a sibling folder's notes)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").glob("[!_]*.md")),
             root / "results" / "README.md", root / "experiments" / "README.md"]
    broken = []
    for page in pages:
        for link in re.findall(r"\]\(([^)]+)\)", page.read_text(encoding="utf-8")):
            target = link.split("#")[0]
            if target and not target.startswith(("http://", "https://")):
                resolved = (page.parent / target).resolve()
                if not resolved.exists() or not resolved.is_relative_to(root):
                    broken.append(f"{page.relative_to(root)} -> {link}")
    assert not broken, broken
