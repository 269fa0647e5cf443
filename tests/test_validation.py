"""Everything a bench is given is checked before the first run: a bad value exits 2 in seconds, named, no traceback."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ftlib.bench import grid
from ftlib.datasets import check_resolution, load_dataset
from ftlib.errors import FtlibError
from ftlib.strategies import parse_strategy


def cli(tmp_path, *args, env=None):
    """``python -m ftlib bench --profile smoke --quiet ARGS``; returns (rc, stderr + stdout, seconds)."""
    full = {**os.environ, "FTLIB_DATA": str(tmp_path / "data"), **(env or {})}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ftlib", "bench", "--profile", "smoke", "--quiet", *args],
                         capture_output=True, text=True, env=full, timeout=300)
    return out.returncode, out.stderr + out.stdout, time.perf_counter() - start


@pytest.mark.parametrize("args, env, message", [
    (["--seeds", "-1"], None, "--seeds must be integers >= 0, got '-1'"),
    (["--seeds", ""], None, "--seeds is empty"),
    (["--dataset", ""], None, "--dataset is empty .* hymenoptera"),
    (["--strategies", "linear_probe:c_grid=-1"], None, "linear_probe: c_grid must be a number > 0"),
    (["--resolution", "100000"], None, "--resolution: .* from 16 to 1024 px, got 100000 .*memory"),
    ([], {"FTLIB_DATA": "/proc/ftlib-cache"}, "/proc/ftlib-cache .*set FTLIB_DATA"),
    (["--out", "/proc/ftlib-results"], None, "/proc/ftlib-results .*--out"),
], ids=["negative-seed", "empty-seeds", "empty-dataset", "c_grid", "resolution", "FTLIB_DATA", "out"])
def test_bad_input_exits_2_in_seconds_before_training(tmp_path, args, env, message):
    import re

    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "results")]
    rc, text, seconds = cli(tmp_path, *args, env=env)
    assert rc == 2, text
    assert re.search(message, text), text
    assert "Traceback" not in text and text.count("\n") == 1, text  # one line
    assert not (tmp_path / "results" / "results.csv").exists()  # nothing trained
    assert seconds < 120, seconds  # the import of torch is most of it


def test_shots_all_on_a_folder_with_too_small_classes_exits_2_naming_the_class(tmp_path):
    for c, n in (("big", 8), ("tiny", 1)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((12, 12, 3), 20 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    rc, text, _ = cli(tmp_path, "--dataset", f"imagefolder:{tmp_path / 'imgs'}", "--shots", "all",
                      "--strategies", "linear_probe", "--seeds", "0", "--out", str(tmp_path / "results"))
    assert rc == 2 and "'tiny' has 1 image(s): too few" in text and "Traceback" not in text, text


def _folder(root, per_class=6):
    for c in ("ants", "bees"):
        os.makedirs(os.path.join(root, c))
        for i in range(per_class):
            Image.fromarray(np.full((12, 12, 3), 20 * i + (c == "bees") * 100, np.uint8)).save(
                os.path.join(root, c, f"{i}.png"))


def test_a_folder_whose_path_is_not_utf8_trains_in_the_library_and_is_refused_by_bench_before_training(tmp_path):
    """The library takes any path Linux does; the CLI refuses one results.csv cannot record, before any run."""
    import ftlib

    root = os.path.join(str(tmp_path), os.fsdecode(b"caf\xe9-latin1"))  # a Latin-1 name: not valid UTF-8
    _folder(root)
    rec = ftlib.run(ftlib.RunConfig(f"imagefolder:{root}", strategy=ftlib.linear_probe(), shots=2, resolution=32,
                                    max_test_per_class=2), progress=False)
    assert rec["status"] == "ok" and rec["n_labelled"] == 4
    out = tmp_path / "results"
    rc, text, _ = cli(tmp_path, "--dataset", f"imagefolder:{root}", "--shots", "2", "--strategies", "linear_probe",
                      "--seeds", "0", "--out", str(out))
    assert rc == 2 and "not valid UTF-8" in text and "caf\\xe9-latin1" in text and "Traceback" not in text, text
    assert not (out / "results.csv").exists()


def test_help_shows_each_default_once_and_never_none():
    out = subprocess.run([sys.executable, "-m", "ftlib", "bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert "(default: None)" not in text
    for block in text.split(" --")[1:]:  # one option's help each
        assert block.count("(default") <= 1, block


@pytest.mark.parametrize("text, message", [
    ("linear_probe:c_grid=-1", "c_grid must be a number > 0"),
    ("linear_probe:c_grid=0", "c_grid must be a number > 0"),
    ("full:lr=0", "lr must be a number > 0"),
    ("full:lr=-0.1", "lr must be a number > 0"),
    ("full:lr=nan", "lr must be a number > 0"),
    ("partial:head_lr_mult=0", "head_lr_mult must be a number > 0"),
    ("full:weight_decay=-1", "weight_decay must be a number >= 0"),
    ("l2sp:alpha=-1", "alpha must be a number >= 0"),
    ("l2sp:beta=-0.5", "beta must be a number >= 0"),
    ("l2sp:alpha=inf", "alpha must be a number >= 0"),
])
def test_every_strategy_parameter_is_checked_where_the_value_is_made(text, message):
    with pytest.raises(FtlibError, match=message):
        parse_strategy(text)


def test_valid_strategy_parameters_still_parse():
    assert parse_strategy("l2sp:alpha=0:beta=0").alpha == 0
    assert parse_strategy("linear_probe:c_grid=0.5").c_grid == (0.5,)
    assert parse_strategy("full:lr=0.01:weight_decay=0").lr == 0.01


def test_strategies_flag_keeps_the_commas_of_a_tuple_value():
    from ftlib.__main__ import _strategies

    assert _strategies("linear_probe:c_grid=0.1,1,10,full,partial:k=2") == [
        "linear_probe:c_grid=0.1,1,10", "full", "partial:k=2"]
    assert parse_strategy(_strategies("linear_probe:c_grid=0.1,1")[0]).c_grid == (0.1, 1.0)
    assert _strategies("partial:k=2,nonsense") == ["partial:k=2", "nonsense"]  # refused by name later
    with pytest.raises(FtlibError, match="unknown strategy 'nonsense'"):
        parse_strategy("nonsense")


def test_library_checks_seeds_and_resolution():
    with pytest.raises(FtlibError, match="seeds must be integers >= 0, got -1"):
        grid("smoke", seeds=[-1])
    with pytest.raises(FtlibError, match="from 16 to 1024 px"):
        grid("smoke", resolution=4096)
    for bad in (8, 2000, 64.0, True, "64"):
        with pytest.raises(FtlibError, match="memory"):
            check_resolution(bad)
    assert check_resolution(16) == 16 and check_resolution(1024) == 1024
    with pytest.raises(FtlibError, match="from 16 to 1024"):
        load_dataset("hymenoptera", resolution=5000)


def test_a_write_that_fails_mid_bench_exits_2_naming_the_file_and_what_to_change(monkeypatch, capsys):
    from ftlib import __main__ as cli_main
    from ftlib import bench as bench_module

    def full(*a, **k):
        raise OSError(28, "No space left on device", "/results/results.csv")

    monkeypatch.setattr(bench_module, "bench", full)
    rc = cli_main.main(["bench", "--profile", "smoke", "--dataset", "hymenoptera", "--strategies", "linear_probe",
                        "--seeds", "0", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "/results/results.csv (No space left on device)" in err and "--out" in err
    assert "FTLIB_DATA" in err and "Traceback" not in err
