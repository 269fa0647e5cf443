"""The summary page: summary.md and its four PNGs, for a whole store or some of its runs."""
import matplotlib

matplotlib.use("Agg")  # tests never open windows
from helpers import records  # noqa: E402

from ftlib import page  # noqa: E402
from ftlib.store import ResultStore  # noqa: E402


def test_write_summary_writes_four_pngs_and_markdown(tmp_path):
    store = ResultStore(tmp_path)
    for r in records():
        store.add(r)
    paths = page.write_summary(tmp_path)
    assert set(paths) == {"summary", *page.PLOTS}
    for name in page.PLOTS:
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["summary"].read_text()
    assert "### toy, shots=all" in md and "![acc_vs_shots](acc_vs_shots.png)" in md


def test_write_summary_restricted_to_run_ids_counts_only_those(tmp_path):
    store = ResultStore(tmp_path)
    recs = records()
    for r in recs:
        store.add(r)
    keep = [r["run_id"] for r in recs if r["strategy"] == "full" and r["status"] == "ok"]
    md = page.write_summary(tmp_path, run_ids=keep)["summary"].read_text()
    assert md.count("finished runs") == 1 and f"{len(keep)} finished runs" in md
    assert "partial" not in md  # the other strategy's rows are left out of the table
