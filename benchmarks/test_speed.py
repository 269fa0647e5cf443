"""``python -m benchmarks.speed --tiny``: the side-by-side benchmark runs end to end (plumbing only, no timed assertions)."""
import json
import os
import subprocess
import sys
from pathlib import Path

KEYS = ("fit_vs_tutorial", "fit_vs_bare_step", "probe_vs_sgd_head", "partial1_vs_full", "eval_vs_naive")
ROOT = Path(__file__).resolve().parent.parent  # python -m benchmarks.speed runs from the clone's root


def test_speed_tiny_writes_json_and_markdown(tmp_path):
    # one thread: on a busy shared CPU, two OpenMP threads per process can stall each other many-fold
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "speed.json").read_text())
    assert set(result) == {*KEYS, "details"}
    for key in KEYS:
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
    details = result["details"]
    assert details["tiny"] is True and details["machine"]["cores"] >= 1
    assert details["gpu"] is not None or details["gpu_note"]
    assert "fit_vs_tutorial" in proc.stdout and "fit_vs_bare_step" in proc.stdout  # the table is printed
    md = (tmp_path / "speed.md").read_text()
    assert "What each baseline does" in md and "| eval_vs_naive |" in md


def test_baseline_reads_the_files_behind_the_split():
    from ftlib.datasets import load_dataset
    from benchmarks.tutorial import split_files

    ds = load_dataset("hymenoptera", shots=3, seed=1, resolution=64, max_test_per_class=5)
    paths, labels = split_files(ds, "train")
    assert len(paths) == len(ds.train) == 6 and labels == ds.train.labels.tolist()
    assert all(p.parent.name == ds.classes[y] and p.parent.parent.name == "train" for p, y in zip(paths, labels))
    test_paths, _ = split_files(ds, "test")
    assert all(p.parent.parent.name == "val" for p in test_paths)  # the tutorial's val/ is ftlib's test


def test_gpu_item_runs_its_grid_and_tabulates_it():
    """The GPU item's code path, run on the CPU (tiny): every backbone x mode measured, ratio = amp / fp32."""
    from benchmarks import speed_gpu

    gpu, note = speed_gpu.gpu_throughput(tiny=True, device="cpu")
    assert [r["backbone"] for r in gpu["runs"]] == list(speed_gpu.GPU_BACKBONES)
    for r in gpu["runs"]:
        assert r["amp_channels_last_images_per_s"] > 0 and r["fp32_images_per_s"] > 0
        assert abs(r["speedup"] - r["amp_channels_last_images_per_s"] / r["fp32_images_per_s"]) < 1e-9
    md = speed_gpu.gpu_markdown(gpu)
    assert md.count("\n| `") == len(gpu["runs"]) and "cpu, 64 px" in md


def test_speed_gpu_without_cuda_is_a_one_line_error(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("the message under test is for machines without CUDA")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--gpu", "--tiny", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no CUDA device" in proc.stderr and not (tmp_path / "speed-gpu.json").exists()


def test_op_family_tells_depthwise_from_dense_convolutions_by_kernel_shape():
    from benchmarks.steps import _op_family

    # forward rows: (input, weight, ...); backward rows: (grad_out, input, weight, ...)
    assert _op_family("aten::mkldnn_convolution", [[32, 96, 81, 81], [96, 1, 3, 3], []]) == "conv forward, depthwise"
    assert _op_family("aten::mkldnn_convolution", [[32, 16, 80, 80], [96, 16, 1, 1], []]) == "conv forward, dense"
    assert _op_family("aten::convolution_backward",
                      [[32, 672, 10, 10], [32, 672, 10, 10], [672, 1, 5, 5]]) == "conv backward, depthwise"
    assert _op_family("aten::convolution_backward",
                      [[32, 1152, 5, 5], [32, 192, 5, 5], [1152, 192, 1, 1]]) == "conv backward, dense"
    assert _op_family("aten::native_batch_norm_backward", []) == "BatchNorm backward"
    assert _op_family("aten::add_", [[3]]) == "other"


def test_step_profile_accounts_for_the_whole_step_by_family():
    from benchmarks.steps import step_profile

    df = step_profile(64, steps=1)
    assert abs(df.share.sum() - 1) < 1e-9 and (df.seconds >= 0).all()
    assert list(df.seconds) == sorted(df.seconds, reverse=True)
    # lite0 has depthwise and 1x1 convolutions and BatchNorm in train mode: each family shows up
    assert {"conv forward, depthwise", "conv forward, dense", "conv backward, depthwise", "conv backward, dense",
            "BatchNorm forward", "BatchNorm backward"} <= set(df.family)
