"""Speed, memory and ground-truth figures of the synthetic slide generator.

    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py [--width-um 4000 --height-um 3000]

Prints, per scan, level-0 size, CPU seconds (all threads; the single-core cost, robust to
a busy machine), wall seconds, Mpx per CPU second and file size; then the peak resident
memory, and the ground truth's round-trip error and non-rigid residual (um).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from scorpion_build.synth import SynthConfig, load_truth
from scorpion_build.synth.generate import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width-um", type=float, default=4000.0)
    parser.add_argument("--height-um", type=float, default=3000.0)
    parser.add_argument("--scanners", default="AT2,GT450,DP200,P1000,Philips")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    config = SynthConfig(
        n_slides=1,
        scanners=tuple(args.scanners.split(",")),
        width_um=args.width_um,
        height_um=args.height_um,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        marks: list[tuple[float, float]] = []  # (wall, cpu) at the start of each scan
        t0, c0 = time.perf_counter(), time.process_time()
        table = synthesize(
            out, config, progress=lambda _: marks.append((time.perf_counter(), time.process_time()))
        )
        total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
        truth = load_truth(out, "synth_000")
        print(f"slide {args.width_um:.0f} x {args.height_um:.0f} um, OpenCV threads {args.threads}")
        print(f"specimen: {marks[0][1] - c0:.1f} CPU s ({marks[0][0] - t0:.1f} s wall)")
        ends = marks[1:] + [(t0 + total, c0 + total_cpu)]
        for (wall0, cpu0), (wall1, cpu1), row in zip(marks, ends, table.itertuples(), strict=True):
            w, h = truth.size_px(row.scanner)
            mb = Path(row.path).stat().st_size / 1e6
            cpu = cpu1 - cpu0
            print(
                f"  {row.scanner:8s} {w:6d} x {h:6d} px  {cpu:6.1f} CPU s  {wall1 - wall0:6.1f} s "
                f"wall  {w * h / cpu / 1e6:5.1f} Mpx/CPU s  {mb:7.1f} MB"
            )
        print(f"total {total_cpu:.1f} CPU s, {total:.1f} s wall; peak RSS {_peak_rss_mb():.0f} MB")
        rng = np.random.default_rng(0)
        pts = truth.tissue_points(20000, rng)
        for scanner in truth.scanners[1:]:
            there = truth.ref_to_scanner(scanner, pts)
            rt = np.abs(truth.scanner_to_ref(scanner, there) - pts).max()
            m = truth.affine(scanner)
            res = np.hypot(*(pts @ m[:, :2].T + m[:, 2] - there).T) * truth.mpp(scanner)
            print(
                f"  truth {scanner:8s} round trip max {rt:.1e} px; non-rigid residual "
                f"mean {res.mean():.2f} um, max {res.max():.2f} um"
            )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


if __name__ == "__main__":
    main()
