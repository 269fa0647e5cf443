"""Shared test set-up: notebooks under nbval run in the small "smoke" profile unless told otherwise."""
import os

# nbval starts each notebook's kernel with this process's environment.
os.environ.setdefault("FTLIB_PROFILE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402


@pytest.fixture(scope="package")
def lite0_random():
    """lite0 with random weights and a 2-class head (shapes and counts, no download)."""
    import ftlib
    from helpers import LITE0

    return ftlib.load_backbone(LITE0, num_classes=2, pretrained=False)


@pytest.fixture(scope="package")
def partial1_run():
    """``(record, backbone, dataset)`` of one tiny real ``partial(k=1)`` run, shared by the BatchNorm and save tests."""
    import ftlib
    from helpers import tiny

    return ftlib.run(tiny(ftlib.partial(k=1), epochs=2), progress=False, return_model=True)
