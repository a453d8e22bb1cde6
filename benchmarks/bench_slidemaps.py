"""Slide maps: what drawing them adds to `extract` and `analyze`.

Prints, for an existing build (the demo build by default), the time to write every slide
map (thumbnails of every scan, tissue mask, boxes, PNG) over a few repeats: median with
the min-max range, per slide and per scan, and the projected time for the SCORPION build
(48 slides x 5 scanners) at the same thumbnail size.

Usage: .venv/bin/python -m benchmarks.bench_slidemaps [BUILD] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SCORPION_SCANS = 48 * 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", nargs="?", default="demo_build")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from scorpion_build.manifest import BuildDir
    from scorpion_build.report.slidemaps import write_slide_maps
    from scorpion_build.report.summary import load_manifests

    tables = load_manifests(BuildDir.at(args.build))
    if tables["regions"] is None:
        raise SystemExit(f"{args.build}: no regions manifest; run the demo first (make demo)")
    slides = tables["regions"]["slide_id"].nunique()
    scans = int(tables["slides"]["slide_id"].isin(tables["regions"]["slide_id"]).sum())
    seconds = []
    with tempfile.TemporaryDirectory() as out:  # the build's own qc/ stays untouched
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            maps = write_slide_maps(Path(out), tables)
            seconds.append(time.perf_counter() - t0)
    drawn = sum(m["path"] is not None for m in maps)
    med = statistics.median(seconds)
    print(f"build {args.build}: {slides} slides, {scans} scans, {drawn} maps drawn")
    print(
        f"all maps: median {med:.2f} s [min {min(seconds):.2f}, max {max(seconds):.2f}] "
        f"over {args.repeats} repeats"
    )
    print(
        f"per slide {med / max(slides, 1):.2f} s [{min(seconds) / max(slides, 1):.2f}, "
        f"{max(seconds) / max(slides, 1):.2f}]; per scan {med / max(scans, 1):.3f} s"
    )
    print(
        f"projected SCORPION build ({SCORPION_SCANS} scans): "
        f"{med / max(scans, 1) * SCORPION_SCANS:.0f} s "
        f"[{min(seconds) / max(scans, 1) * SCORPION_SCANS:.0f}, "
        f"{max(seconds) / max(scans, 1) * SCORPION_SCANS:.0f}]"
    )


if __name__ == "__main__":
    main()
