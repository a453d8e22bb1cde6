"""Registration accuracy and speed against synthetic ground truth, per method.

Synthesises a suite (or reuses one) with the differences real re-scans show: 90 and 180
degree rotations, a mirrored scan, strong stain and blur differences, a scan missing part
of the tissue, 2-4 um of non-rigid distortion and tile-stitching shifts, plus a blank and
an unrelated scan that must fail. Registers it with each method and prints, per method:
the error against ground truth over tissue points (um: median, p90, max), the floor (the
best any global affine could do: an affine least-squares fit to the ground truth on the
same points), failed or wrong pairs (median error over 20 um), and seconds per pair.

    python benchmarks/bench_register.py --out /tmp/bench_register
    python benchmarks/bench_register.py --out /tmp/bench_register_native --native

``--native`` writes each scanner's own container (Aperio SVS, Ventana BIF with overlapping
camera tiles, sparse Philips TIFF): the same suite, so the two runs compare like for like.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build import geometry as geo
from scorpion_build.manifest import BuildDir
from scorpion_build.register import RegisterConfig, register_build
from scorpion_build.scan import scan
from scorpion_build.synth import Scenario, SynthConfig, load_truth, synthesize

WRONG_UM = 20.0
SCENARIOS = (
    Scenario("rot180", "GT450", 0),
    Scenario("mirror", "DP200", 0),
    Scenario("rot90", "Philips", 0),
    Scenario("strong-stain", "P1000", 0),
    Scenario("partial", "GT450", 1),
    Scenario("strong-stain", "DP200", 1),
    Scenario("mirror", "Philips", 1),
    Scenario("rot90", "Philips", 1),
    Scenario("blank", "P1000", 2),
    Scenario("unrelated", "Philips", 2),
)


def make_suite(
    out: Path, n_slides: int, width_um: float, height_um: float, seed: int, native: bool = False
) -> None:
    if (out / "slides.csv").is_file():
        print(f"reusing the synthetic suite in {out}")
        return
    config = SynthConfig(
        n_slides=n_slides,
        width_um=width_um,
        height_um=height_um,
        seed=seed,
        scenarios=tuple(s for s in SCENARIOS if s.slide is None or s.slide < n_slides),
        distortion_um=3.0,
        native=native,
    )
    t0 = time.perf_counter()
    synthesize(out, config)
    print(
        f"synthesised {n_slides} slides of {width_um / 1000:g} x {height_um / 1000:g} mm "
        f"in {time.perf_counter() - t0:.0f} s -> {out}"
    )


def evaluate(suite: Path, table: pd.DataFrame, n_points: int = 2000) -> pd.DataFrame:
    """Per pair: error against ground truth and the global-affine floor, in um."""
    rows = []
    truths = {}
    for r in table.itertuples():
        truth = truths.setdefault(r.slide_id, load_truth(suite, r.slide_id))
        if r.scanner == truth.reference:
            continue
        row = {
            "slide_id": r.slide_id,
            "scanner": r.scanner,
            "scenarios": ",".join(truth.scenarios.get(r.scanner, ())) or "-",
            "status": r.status,
            "expect_failure": truth.expect_failure(r.scanner),
            "seconds": r.seconds,
            "residual_um": r.residual_um,
        }
        if not row["expect_failure"]:
            rng = np.random.default_rng(0)
            pts = truth.tissue_points(n_points, rng)
            true = truth.ref_to_scanner(r.scanner, pts)
            mpp = truth.mpp(r.scanner)
            err = np.full(len(pts), np.inf)
            if r.status != "failed":
                err = np.linalg.norm(geo.apply(geo.from_six(r.matrix), pts) - true, axis=1) * mpp
            design = np.hstack([pts, np.ones((len(pts), 1))])
            sol, *_ = np.linalg.lstsq(design, true, rcond=None)
            floor = np.linalg.norm(design @ sol - true, axis=1) * mpp
            row.update(
                err=err,
                floor=floor,
                median_um=float(np.median(err)),
                floor_um=float(np.median(floor)),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def report(method: str, ev: pd.DataFrame, wall_s: float) -> None:
    print(f"\n== method {method} ==")
    cols = [
        "slide_id",
        "scanner",
        "scenarios",
        "status",
        "median_um",
        "floor_um",
        "residual_um",
        "seconds",
    ]
    with pd.option_context("display.width", 160, "display.float_format", "{:.2f}".format):
        print(ev[cols].to_string(index=False))
    good = ev[~ev["expect_failure"]]
    bad = good[(good["status"] == "failed") | (good["median_um"] > WRONG_UM)]
    ok = good.drop(bad.index)
    err = np.concatenate(ok["err"].to_list()) if len(ok) else np.array([np.nan])
    floor = np.concatenate(good["floor"].to_list())
    expected = ev[ev["expect_failure"]]
    caught = int((expected["status"] == "failed").sum())
    print(
        f"error over tissue points (um), {len(ok)} registered pairs: median {np.median(err):.2f}, "
        f"p90 {np.percentile(err, 90):.2f}, max {err.max():.2f}"
    )
    print(
        f"global-affine floor (um): median {np.median(floor):.2f}, p90 "
        f"{np.percentile(floor, 90):.2f}, max {floor.max():.2f}; median error / floor = "
        f"{np.median(err) / np.median(floor):.2f}"
    )
    print(
        f"failed or wrong pairs (median error > {WRONG_UM:g} um): {len(bad)} of {len(good)}"
        + (f" ({', '.join(bad['slide_id'] + ' ' + bad['scanner'])})" if len(bad) else "")
    )
    print(f"scans that must fail (blank, unrelated) marked failed: {caught} of {len(expected)}")
    print(
        f"seconds per pair: median {ev['seconds'].median():.1f}, max {ev['seconds'].max():.1f}"
        f" (wall {wall_s:.0f} s for {len(ev)} pairs)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_register"))
    ap.add_argument("--slides", type=int, default=3)
    ap.add_argument("--width-um", type=float, default=4000.0)
    ap.add_argument("--height-um", type=float, default=3000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--methods", default="robust,orb-affine")
    ap.add_argument("--native", action="store_true", help="scanners' own containers")
    args = ap.parse_args()
    suite = args.out / "suite"
    make_suite(suite, args.slides, args.width_um, args.height_um, args.seed, args.native)
    for method in args.methods.split(","):
        build = BuildDir.at(args.out / f"build_{method}")
        build.write("slides", scan(suite / "slides.csv"))
        t0 = time.perf_counter()
        table = register_build(
            build.root,
            config=RegisterConfig(method=method),
            workers=args.workers,
            force=True,
            progress=False,
        )
        report(method, evaluate(suite, table), time.perf_counter() - t0)


if __name__ == "__main__":
    main()
