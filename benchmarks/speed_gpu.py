"""``python -m benchmarks.speed --gpu``: the ``gpu`` profile's training throughput, autocast + channels-last vs fp32.

lite0 and ``torchvision/resnet50`` at 224 px through ``ftlib.fit``, at the gpu
profile's batch (32) and a GPU-sized one (128). ``speed`` runs it too when CUDA is present.

Example:
    >>> main(out="/tmp/speed")  # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ftlib.errors import FtlibError
from ftlib.strategies import Full
from ftlib.train import PeakMemory

from .common import BACKBONE, benchmark_dataset, build, ftlib_fit, log, machine

GPU_BACKBONES = (BACKBONE, "torchvision/resnet50")
GPU_BATCHES = (32, 128)  # hyper.batch_size's 32 (what the gpu profile's runs use) and a GPU-sized batch
GPU_MODES = (("amp_channels_last", True, True), ("fp32", False, False))  # (name, autocast, channels-last)
GPU_IMAGES = 4096  # training images per timed fit call (one epoch of repeated passes, then one val pass)


def gpu_throughput(tiny: bool, device: str = "cuda") -> tuple:
    """The ``gpu`` profile's training images/s at 224 px: autocast + channels-last vs fp32 NCHW.

    For each backbone and batch size, each mode trains ``full()`` through ``ftlib.fit`` for one
    warm-up call (cuDNN picks its kernels) and one timed call of ``GPU_IMAGES`` images plus its val
    pass. Weights are random: throughput does not depend on them. ``device="cpu"`` runs the same
    code without CUDA (the tests' plumbing check).
    """
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        return None, "no CUDA device in this process (torch.cuda.is_available() is False): GPU item not measured"
    res = 64 if tiny else 224  # the gpu profile's resolution is None = the backbones' native 224 px
    images = 64 if tiny else GPU_IMAGES
    ds = benchmark_dataset(res, tiny)
    out = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "resolution": res,
           "train_images_per_call": images, "n_train": len(ds.train), "n_val": len(ds.val),
           "torch": str(torch.__version__), "cudnn": torch.backends.cudnn.version() if cuda else None,
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
           "autocast_dtype": ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if cuda else "none (CPU)",
           "runs": []}
    for name in GPU_BACKBONES:
        for batch in GPU_BATCHES[:1] if tiny else GPU_BATCHES:
            row = {"backbone": name, "batch": batch}
            for mode, amp, cl in GPU_MODES:
                bb = build(len(ds.classes), name, pretrained=False, device=device)
                ftlib_fit(bb, ds, Full(), 1, amp, cl, batch, min_epoch_images=4 * batch)  # warm-up
                with PeakMemory(torch.device(device)) as meter:
                    secs, n, _ = ftlib_fit(bb, ds, Full(), 1, amp, cl, batch, min_epoch_images=images)
                row[f"{mode}_images_per_s"] = n / secs
                row[f"{mode}_peak_mem_mb"] = meter.mb
                log(f"    GPU {name} batch {batch} {mode}: {n / secs:.0f} train images/s")
                del bb
                if cuda:
                    torch.cuda.empty_cache()
            row["speedup"] = row["amp_channels_last_images_per_s"] / row["fp32_images_per_s"]
            out["runs"].append(row)
    return out, f"measured on {out['device']}"


def gpu_markdown(gpu: dict) -> str:
    """The GPU rows as a markdown table (speed.md, speed-gpu.md)."""
    lines = [f"{gpu['device']}, {gpu['resolution']} px, `ftlib.fit` with `full()`, {gpu['train_images_per_call']} "
             f"train images per timed call (hymenoptera, repeated passes) + one val pass of {gpu['n_val']}; "
             f"torch {gpu['torch']}, cuDNN {gpu['cudnn']}, autocast {gpu['autocast_dtype']}, "
             f"fp32 convolutions with TF32 {'allowed' if gpu['cudnn_allow_tf32'] else 'off'} (PyTorch's default).", "",
             "| backbone | batch | autocast + channels-last (img/s) | fp32 NCHW (img/s) | speed-up | peak GPU MB (amp / fp32) |",
             "|---|---|---|---|---|---|"]
    for r in gpu["runs"]:
        lines.append(f"| `{r['backbone']}` | {r['batch']} | {r['amp_channels_last_images_per_s']:.0f} | "
                     f"{r['fp32_images_per_s']:.0f} | {r['speedup']:.2f} | "
                     f"{r['amp_channels_last_peak_mem_mb']:.0f} / {r['fp32_peak_mem_mb']:.0f} |")
    return "\n".join(lines)


def main(tiny: bool = False, out: str = ".") -> int:
    """Only the GPU item, into ``speed-gpu.json`` and ``speed-gpu.md``; exit 2 without CUDA."""
    torch.set_flush_denormal(True)
    gpu, note = gpu_throughput(tiny)
    if gpu is None:
        raise FtlibError(f"speed --gpu: {note}")
    text = gpu_markdown(gpu)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "speed-gpu.json").write_text(json.dumps({"gpu": gpu, "machine": machine()}, indent=1, default=str))
    (out_dir / "speed-gpu.md").write_text(f"# ftlib GPU training throughput\n\nGenerated by `python -m benchmarks.speed "
                                          f"--gpu{' --tiny' if tiny else ''}`.\n\n{text}\n")
    print(text)
    print(f"wrote {out_dir / 'speed-gpu.json'} and {out_dir / 'speed-gpu.md'}")
    return 0
