"""register's manifest bookkeeping: rewriting registrations.parquet after every pair (as
before 15b) against once per finished slide, for builds of 50-400 slides x 5 scanners.

No slide is opened: rows are identity rows, written with register's own writer into a
temporary build, so the figures are the bookkeeping cost alone (what grows with the
square of the build when every pair rewrites the whole table). register itself also waits
``WRITE_EVERY_S`` between writes, so the per-slide column is its worst case.

    .venv/bin/python -m benchmarks.bench_register_manifest            # 50, 100, 200 slides
    .venv/bin/python -m benchmarks.bench_register_manifest --slides 400

Figures depend on how busy the machine is: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from scorpion_build.manifest import BuildDir
from scorpion_build.register import pipeline
from scorpion_build.register.pair import identity_row
from scorpion_build.register.tasks import Scan, keyed

SCANNERS = ("AT2", "GT450", "DP200", "P1000", "Philips")


def rows_of(n_slides: int) -> list[dict]:
    return [
        keyed(identity_row(), Scan(f"s{i:04d}", scanner, f"/x/s{i}_{scanner}.svs"), "AT2", "robust")
        for i in range(n_slides)
        for scanner in SCANNERS
    ]


def time_writes(rows: list[dict], every: int) -> tuple[int, float]:
    """Write the table as register would after every ``every`` finished rows and at the
    end; the number of writes and their seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        bdir = BuildDir.at(tmp)
        done: dict = {}
        writes, t0 = 0, time.perf_counter()
        for k, row in enumerate(rows, 1):
            done[(row["slide_id"], row["scanner"])] = row
            if k % every == 0 or k == len(rows):
                pipeline._write(bdir, done.values())
                writes += 1
        return writes, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, nargs="*", default=[50, 100, 200])
    args = parser.parse_args()
    print(
        f"{'slides':>6s} {'pairs':>6s} {'per pair: writes':>17s} {'s':>7s} "
        f"{'per slide: writes':>18s} {'s':>7s}"
    )
    for n in args.slides:
        rows = rows_of(n)
        per_pair = time_writes(rows, 1)
        per_slide = time_writes(rows, len(SCANNERS))
        print(
            f"{n:6d} {len(rows):6d} {per_pair[0]:17d} {per_pair[1]:7.2f} "
            f"{per_slide[0]:18d} {per_slide[1]:7.2f}"
        )


if __name__ == "__main__":
    main()
