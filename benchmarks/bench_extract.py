"""extract: alignment accuracy against ground truth, throughput, and worker memory.

Accuracy: a synthetic suite (3 slides x 5 scanners, 3 x 2.5 mm, non-rigid distortion ~3 um,
tile-stitching offsets) is scanned, registered and extracted (6 regions of 800 um at
1024 px); every non-reference patch's ``patch_to_slide`` is compared with the true map on a
9 x 9 grid of points. Printed with and without local refinement.

Throughput (one worker process = one core): full extract (read, area-average, warp,
refinement, Zarr write) in patches/s, against (a) a naive extractor (openslide level-0 read
of the patch footprint, then cv2.resize) and (b) the decode bound (decoding just the tiles of
the level the extract reads), and (c) the output floor: that decode plus one bilinear warp to
1024 px and the store's Zstd encode, work every extract writing this store has to do.
Memory: peak RSS of a worker process on two slide sizes.

    .venv/bin/python -m benchmarks.bench_extract
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import cv2
import numpy as np
import pandas as pd

from benchmarks.common import peak_rss_mb, run_isolated, scanned_build, synth_suite

REGIONS, REGION_UM, SIZE = 6, 800.0, 1024


def suite(width_um: float = 3000.0, height_um: float = 2500.0, slides: int = 3):
    return synth_suite(
        f"extract_{slides}x{width_um:.0f}x{height_um:.0f}",
        n_slides=slides,
        width_um=width_um,
        height_um=height_um,
        downsample=2,
        scanner_mpp={"AT2": 0.25},
        distortion_um=3.0,
        seed=11,
    )


def registered_build(src, name: str):
    from scorpion_build.register.pipeline import register_build

    build = scanned_build(src, f"build_{name}")
    if not (build / "manifests" / "registrations.parquet").is_file():
        register_build(build, workers=1, progress=False)
    return build


def run_extract(build, refine: bool) -> tuple[float, float, pd.DataFrame, pd.DataFrame]:
    """Wall and CPU seconds (all threads of this process) of a full extract, and its rows."""
    from scorpion_build.extract import ExtractConfig, extract_build

    shutil.rmtree(build / ".state" / "extract", ignore_errors=True)
    shutil.rmtree(build / "patches.zarr", ignore_errors=True)
    config = ExtractConfig(regions=REGIONS, region_um=REGION_UM, size=SIZE, refine=refine)
    t0, c0 = time.perf_counter(), time.process_time()
    regions, patches = extract_build(build, config, workers=1, progress=False)
    return time.perf_counter() - t0, time.process_time() - c0, regions, patches


def errors_um(src, regions: pd.DataFrame, patches: pd.DataFrame) -> np.ndarray:
    from scorpion_build import geometry as geo
    from scorpion_build.extract import ExtractConfig, region_to_reference
    from scorpion_build.synth import load_truth

    config = ExtractConfig(region_um=REGION_UM, size=SIZE)
    grid = np.stack(
        np.meshgrid(np.linspace(0.5, SIZE - 0.5, 9), np.linspace(0.5, SIZE - 0.5, 9)), -1
    ).reshape(-1, 2)
    table = regions.set_index("sample_id")
    out = []
    truths = {}
    for row in patches.itertuples():
        if row.scanner_index == 0 or row.status == "failed":
            continue
        truth = truths.setdefault(row.slide_id, load_truth(src, row.slide_id))
        r = table.loc[row.sample_id]
        ref_mpp = truth.mpp(truth.reference)
        m_ref = region_to_reference(r.x_um, r.y_um, config, (ref_mpp, ref_mpp))
        want = truth.ref_to_scanner(row.scanner, geo.apply(m_ref, grid))
        got = geo.apply(geo.from_six(row.patch_to_slide), grid)
        out.append(np.hypot(*(got - want).T) * truth.mpp(row.scanner))
    return np.concatenate(out)


def baselines(build, patches: pd.DataFrame) -> tuple[float, float, float]:
    """Seconds per patch: naive (openslide level 0 + resize), the tile-decode bound, and the
    output floor: that decode plus the work no extract writing this store avoids, one
    bilinear warp of the level pixels to SIZE x SIZE and the store's Blosc/Zstd encode.
    Call it single-threaded: OpenCV's own threads would put a second core under the floor."""
    import numcodecs
    import openslide

    from scorpion_build import geometry as geo
    from scorpion_build.slide import Slide

    codec = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.NOSHUFFLE)
    slides = pd.read_parquet(build / "manifests" / "slides.parquet").set_index(
        ["slide_id", "scanner"]
    )
    naive = bound = output = floor_cpu = 0.0
    n = 0
    for row in patches.itertuples():
        if row.status == "failed":
            continue
        path = slides.loc[(row.slide_id, row.scanner), "path"]
        m = geo.from_six(row.patch_to_slide)
        corners = geo.apply(m, geo.box_corners(0, 0, SIZE, SIZE))
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int)
        osr = openslide.OpenSlide(path)
        t0 = time.perf_counter()
        rgba = np.asarray(osr.read_region((int(x0), int(y0)), 0, (int(x1 - x0), int(y1 - y0))))
        cv2.resize(rgba[..., :3], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        naive += time.perf_counter() - t0
        osr.close()
        with Slide(path) as s:
            level = s.best_level(geo.linear_scales(m)[1])
            lv = s.levels[level]
            bx, by = int(x0 / lv.downsample_x), int(y0 / lv.downsample_y)
            bw = int((x1 - x0) / lv.downsample_x) + 1
            bh = int((y1 - y0) / lv.downsample_y) + 1
            tiles = s._backend._tiles  # the direct tile decoder: nothing but decoding
            t0, c0 = time.perf_counter(), time.process_time()
            region = tiles.read(level, bx, by, bw, bh)
            bound += time.perf_counter() - t0
            floor_cpu += time.process_time() - c0
        to_region = geo.compose(
            geo.translation(-bx, -by), geo.scaling(1 / lv.downsample_x, 1 / lv.downsample_y), m
        )
        t0, c0 = time.perf_counter(), time.process_time()
        patch = cv2.warpAffine(
            region,
            geo.to_opencv(to_region),
            (SIZE, SIZE),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        )
        codec.encode(patch)
        output += time.perf_counter() - t0
        floor_cpu += time.process_time() - c0
        n += 1
    return naive / n, bound / n, (bound + output) / n, floor_cpu / n


def worker_memory(width_um: float, height_um: float) -> dict:
    src = suite(width_um, height_um, slides=1)
    build = registered_build(src, f"mem_{width_um:.0f}")
    base = peak_rss_mb()
    *_, patches = run_extract(build, refine=True)
    w, h = pd.read_parquet(build / "manifests" / "slides.parquet")[["width", "height"]].iloc[0]
    return {
        "slide_px": f"{w}x{h}",
        "patches": int(len(patches)),
        "peak_rss_mb": peak_rss_mb(),
        "baseline_mb": base,
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "memory":
        print(json.dumps(worker_memory(float(sys.argv[2]), float(sys.argv[3]))))
        return
    src = suite()
    build = registered_build(src, "accuracy")
    regs = pd.read_parquet(build / "manifests" / "registrations.parquet")
    print(
        f"suite: {regs['slide_id'].nunique()} slides x {regs['scanner'].nunique()} scanners, "
        f"registrations ok {int((regs['status'] == 'ok').sum())}/{len(regs)}"
    )
    print("\nalignment error of non-reference patches vs ground truth (um, 9x9 grid per patch)")
    for refine in (False, True):
        seconds, cpu, regions, patches = run_extract(build, refine)
        err = errors_um(src, regions, patches)
        print(
            f"  refinement {'on ' if refine else 'off'}: median {np.median(err):.3f}  "
            f"p95 {np.percentile(err, 95):.3f}  max {err.max():.3f}  "
            f"({len(err) // 81} patches)"
        )
    n = int((patches["status"] != "failed").sum())
    ours = seconds / n
    from scorpion_build.parallel import single_threaded

    with single_threaded():  # on one core, as the extract's own tasks run
        naive, bound, floor, floor_cpu = baselines(build, patches)
    print(f"\nthroughput, one worker process (= one core), {n} patches of {SIZE} px")
    print(
        f"  extract (with refinement): {1 / ours:6.2f} patches/s  ({ours * 1000:.0f} ms/patch; "
        f"CPU {cpu / n * 1000:.0f} ms/patch, so one core)"
    )
    print(
        f"  naive level-0 + resize:    {1 / naive:6.2f} patches/s  -> extract is "
        f"{naive / ours:.1f}x the naive extractor"
    )
    print(
        f"  tile-decode bound:         {1 / bound:6.2f} patches/s  -> extract is "
        f"{bound / ours:.2f}x the decode bound"
    )
    print(
        f"  output floor:              {1 / floor:6.2f} patches/s  (decode + one 1024 px RGB "
        f"warp + Zstd encode, nothing else; CPU {floor_cpu * 1000:.0f} ms/patch) -> "
        f"{bound / floor:.2f}x the decode bound"
    )
    print(
        f"  extract per patch / output floor: {ours / floor:.2f}x wall, "
        f"{cpu / n / floor_cpu:.2f}x CPU"
    )
    print("\npeak RSS of a worker process running extract (own process each)")
    for w_um, h_um in ((2000.0, 1500.0), (6000.0, 4500.0)):
        r = run_isolated("benchmarks.bench_extract", "memory", str(w_um), str(h_um))
        print(
            f"  slide {r['slide_px']:>12s} px: {r['peak_rss_mb']:.0f} MB peak "
            f"({r['patches']} patches)"
        )


if __name__ == "__main__":
    main()
