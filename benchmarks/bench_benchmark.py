"""Speed of `scorpion-build benchmark`: model inference and the consistency metrics.

Prints:
  1. inference throughput (patches/s) of DeepLabV3+ ResNet34 on 1024 px patches
     (`--device cuda` times float16 AMP on a GPU);
  2. metric time for 480 samples x 5 scanners x 1024 px (the SCORPION protocol's size),
     label maps generated block by block so memory stays small;
  3. the whole metrics-and-report pass of `run_benchmark` reading those predictions from a
     Zarr store on disk (decode, metrics, bootstrap, CSV/Markdown/JSON, both figures).

Usage: .venv/bin/python benchmarks/bench_benchmark.py [--device cpu] [--skip-inference]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from scorpion_build.metrics import consistency_summary, pairwise_dice

SCANNERS = ["AT2", "DP200", "GT450", "P1000", "Philips"]
CLASSES = ["background", "cancer_area", "cancer_stroma"]


def synthetic_predictions(rng: np.random.Generator, n: int, size_px: int) -> np.ndarray:
    """(n, 5, size, size) uint8 maps: blocky regions with scanner-specific disagreements."""
    cells = size_px // 32
    base = rng.integers(0, len(CLASSES), (n, 1, cells, cells), dtype=np.uint8)
    maps = np.repeat(np.repeat(base, 32, axis=2), 32, axis=3)
    maps = np.repeat(maps, len(SCANNERS), axis=1)
    for s in range(1, len(SCANNERS)):  # each scanner relabels a different band
        rows = slice(s * size_px // 10, s * size_px // 10 + size_px // 20)
        maps[:, s, rows] = (maps[:, s, rows] + s) % len(CLASSES)
    return maps


def bench_inference(device_name: str, size_px: int, batch_size: int, batches: int) -> None:
    import torch

    from scorpion_build.bench.inference import predict_batch
    from scorpion_build.models import build_model, resolve_device

    device = resolve_device(device_name)
    model = build_model(encoder="resnet34", num_classes=len(CLASSES)).to(device).eval()
    images = np.random.default_rng(0).integers(
        0, 256, (batch_size, size_px, size_px, 3), dtype=np.uint8
    )
    predict_batch(model, images, device, amp=True)  # warm-up: allocator, cuDNN autotune
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        predict_batch(model, images, device, amp=True)  # returns on the host: synchronised
    seconds = time.perf_counter() - start
    patches = batch_size * batches
    amp = "AMP float16" if device.type == "cuda" else "float32"
    threads = torch.get_num_threads()
    print(
        f"inference  DeepLabV3+ ResNet34 {size_px} px on {device} ({amp}, {threads} threads, "
        f"batch {batch_size}): {patches / seconds:.2f} patches/s "
        f"({seconds / patches:.2f} s/patch, {patches} patches)"
    )


def bench_metrics(n_samples: int, size_px: int, block: int) -> None:
    rng = np.random.default_rng(0)
    compute = 0.0
    blocks = []
    for n0 in range(0, n_samples, block):
        maps = synthetic_predictions(rng, min(block, n_samples - n0), size_px)
        start = time.perf_counter()
        blocks.append(pairwise_dice(maps, len(CLASSES)))
        compute += time.perf_counter() - start
    start = time.perf_counter()
    summary = consistency_summary(np.concatenate(blocks), SCANNERS, CLASSES, n_bootstrap=1000)
    summarise = time.perf_counter() - start
    print(
        f"metrics    {n_samples} samples x {len(SCANNERS)} scanners x {size_px} px: pairwise Dice "
        f"{compute:.1f} s, summary + 1000 bootstrap {summarise:.2f} s "
        f"(average {summary.average:.3f}, minimum {summary.minimum:.3f})"
    )


def bench_end_to_end(n_samples: int, size_px: int) -> None:
    import zarr

    from scorpion_build.benchmark import run_benchmark

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        # the data only names scanners and samples here; tiny patches keep it out of the timing
        group = zarr.open_group(tmp_path / "patches.zarr", mode="w")
        group.attrs["scanners"] = SCANNERS
        patches = group.create_array(
            "patches", shape=(n_samples, len(SCANNERS), 8, 8, 3), dtype=np.uint8
        )
        patches[:] = 128
        preds = zarr.create_array(
            store=str(tmp_path / "preds.zarr"),
            shape=(n_samples, len(SCANNERS), size_px, size_px),
            chunks=(1, 1, size_px, size_px),
            dtype=np.uint8,
        )
        for n0 in range(0, n_samples, 8):
            preds[n0 : n0 + 8] = synthetic_predictions(rng, min(8, n_samples - n0), size_px)
        start = time.perf_counter()
        run_benchmark(
            tmp_path / "patches.zarr",
            tmp_path / "out",
            predictions=tmp_path / "preds.zarr",
            classes=CLASSES,
            progress=False,
        )
        seconds = time.perf_counter() - start
    print(
        f"end-to-end run_benchmark on Zarr predictions, {n_samples} x {len(SCANNERS)} x "
        f"{size_px} px: {seconds:.1f} s (read, metrics, report, figures)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--size", type=int, default=1024, help="patch size in px")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--samples", type=int, default=480)
    parser.add_argument("--e2e-samples", type=int, default=480)
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args()
    if not args.skip_inference:
        bench_inference(args.device, args.size, args.batch_size, args.batches)
    bench_metrics(args.samples, args.size, block=8)
    bench_end_to_end(args.e2e_samples, args.size)


if __name__ == "__main__":
    main()
