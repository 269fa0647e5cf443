"""The README rewriter replaces exactly its generated blocks and says which one is missing."""
import pytest

from tools.readme import write_blocks


def test_write_blocks_replaces_only_the_named_blocks():
    text = "intro\n<!-- a -->\nold a\n<!-- /a -->\nmiddle\n<!-- b -->\nold b\n<!-- /b -->\nend\n"
    out = write_blocks(text, {"a": "new a\n", "b": "new b\nline 2\n"})
    assert out == "intro\n<!-- a -->\nnew a\n<!-- /a -->\nmiddle\n<!-- b -->\nnew b\nline 2\n<!-- /b -->\nend\n"


def test_write_blocks_names_a_missing_block():
    with pytest.raises(ValueError, match="<!-- findings -->"):
        write_blocks("no blocks here\n", {"findings": "x\n"})
