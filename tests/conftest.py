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


# The quick loop while editing is `./run test -m "not slow"`: these test files start processes (the CLI, Ray,
# pip, notebooks' kernels) or train real runs beyond a few steps, so they are marked `slow`. `./run test` (CI,
# README) runs everything. Measured per file with `./run test --durations=0`.
SLOW_FILES = {
    "test_executors.py", "test_bench.py", "test_train_cli.py", "test_predict_cli.py", "test_auto.py",
    "test_conventions.py", "test_reliability.py", "test_paths.py", "test_validation.py", "test_checkpoint_run.py",
    "test_speed.py", "test_datasets.py", "test_results.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES or item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
