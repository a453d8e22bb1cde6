"""read_region_at (level choice + area averaging + one warp) vs level-0 read + cv2.resize.

Reads 800 um regions at 0.78125 um/px (the SCORPION patch) from a synthetic 40x slide
(0.25 um/px, pyramids with 2x and with 4x levels) and prints time per region and the peak
memory of each method, each measured in its own process.

    .venv/bin/python -m benchmarks.bench_read
"""

from __future__ import annotations

import json
import sys
import time

import cv2
import numpy as np

from benchmarks.common import peak_rss_mb, run_isolated, synth_suite

REGION_UM, MPP, N_REGIONS = 800.0, 0.78125, 6


def _suite(downsample: int):
    return synth_suite(
        f"read_ds{downsample}",
        n_slides=1,
        scanners=("AT2",),
        width_um=4000.0,
        height_um=3000.0,
        downsample=downsample,
        scanner_mpp={"AT2": 0.25},
        seed=3,
    )


def _boxes(slide) -> list[tuple[float, float, float, float]]:
    rng = np.random.default_rng(0)
    side = REGION_UM / slide.mpp[0]
    w, h = slide.dimensions
    return [
        (float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side)), side, side)
        for _ in range(N_REGIONS)
    ]


def measure(method: str, downsample: int) -> dict:
    import openslide

    from scorpion_build.slide import Slide

    path = _suite(downsample) / "synth_000" / "AT2.svs"
    slide = Slide(path)
    osr = openslide.OpenSlide(str(path))
    boxes = _boxes(slide)
    base = peak_rss_mb()
    size = round(REGION_UM / MPP)
    t0 = time.perf_counter()
    for box in boxes:
        if method == "read_region_at":
            out = slide.read_region_at(box, MPP)
        else:  # naive: level-0 pixels through openslide, then resize
            x, y, w, h = (int(round(v)) for v in box)
            rgba = np.asarray(osr.read_region((x, y), 0, (w, h)))
            out = cv2.resize(rgba[..., :3], (size, size), interpolation=cv2.INTER_AREA)
        assert out.shape == (size, size, 3)
    seconds = (time.perf_counter() - t0) / len(boxes)
    return {
        "method": method,
        "downsample": downsample,
        "s_per_region": seconds,
        "baseline_mb": base,
        "peak_mb": peak_rss_mb(),
    }


def main() -> None:
    if len(sys.argv) == 3:  # child process: one measurement
        print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
        return
    print(f"800 um regions at {MPP} um/px from a 4 x 3 mm synthetic slide at 0.25 um/px")
    print("peak RSS: the process's peak; baseline: after imports and opening the slide")
    print(f"{'pyramid':>8s} {'method':>20s} {'s/region':>9s} {'peak MB':>8s} {'baseline':>9s}")
    for ds in (2, 4):
        _suite(ds)
        for method in ("read_region_at", "level0+cv2.resize"):
            r = run_isolated("benchmarks.bench_read", method, str(ds))
            print(
                f"{ds:>7d}x {method:>20s} {r['s_per_region']:9.3f} {r['peak_mb']:8.0f} "
                f"{r['baseline_mb']:9.0f}"
            )


if __name__ == "__main__":
    main()
