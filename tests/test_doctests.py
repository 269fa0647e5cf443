"""Every example in ftlib's docstrings runs and prints what it says (those marked ``+SKIP`` need data or time)."""
import doctest
import importlib
import pkgutil

import matplotlib
import pytest

import ftlib

matplotlib.use("Agg")
MODULES = sorted(m.name for m in pkgutil.iter_modules(ftlib.__path__) if m.name != "__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"ftlib.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in ftlib/{name}.py fail"
