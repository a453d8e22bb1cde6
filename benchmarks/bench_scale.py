"""Cost per stage at full slide size: one 20 x 15 mm slide x 5 scanners vs a 2 x 1.5 mm one.

Both slides are written in the scanners' own containers (``synth --native``: Aperio SVS,
Ventana BIF, Philips TIFF, generic TIFF for P1000). Each stage (synth, scan, register,
extract) runs in a fresh process with one worker, so its peak RSS is the stage's own (for
register and extract, that of a worker). Prints, per stage and size, wall seconds and peak
RSS, plus register seconds per pair. Synthesised slides are kept under ``--out`` and reused.

    python benchmarks/bench_scale.py --out /tmp/bench_scale
    python benchmarks/bench_scale.py --out /tmp/bench_scale --sizes 2000x1500   # small only

Targets (issue 12): register under 10 s per pair, extract worker under 1.5 GB, both about
flat in slide size; synth under 2 GB at 20 x 15 mm.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import run_isolated

STAGES = ("synth", "scan", "register", "extract")


def run_stage(stage: str, root: Path, width_um: float, height_um: float) -> dict:
    """One stage in this process; returns wall seconds, peak RSS (MB) and stage figures."""
    from scorpion_build.manifest import BuildDir

    suite, build = root / "suite", root / "build"
    t0 = time.perf_counter()
    extra: dict = {}
    if stage == "synth":
        from scorpion_build.synth import SynthConfig, synthesize

        if (suite / "slides.csv").is_file():
            return {"reused": True}
        config = SynthConfig(n_slides=1, width_um=width_um, height_um=height_um, native=True)
        synthesize(suite, config)
        extra["bytes"] = sum(p.stat().st_size for p in suite.rglob("*") if p.is_file())
    elif stage == "scan":
        from scorpion_build.scan import scan

        rows = scan(suite / "slides.csv")
        BuildDir.at(build).write("slides", rows)
        extra["failed"] = int((rows["status"] == "failed").sum())
    elif stage == "register":
        from scorpion_build.register import register_build

        table = register_build(build, workers=1, force=True, progress=False)
        pairs = table[table["scanner"] != table["reference"]] if "reference" in table else table
        extra["seconds_per_pair"] = [round(float(s), 1) for s in pairs["seconds"]]
        extra["status"] = list(pairs["status"])
    else:
        from scorpion_build.extract import ExtractConfig, extract_build

        regions, patches = extract_build(
            build, ExtractConfig(regions=5), workers=1, force=True, progress=False
        )
        extra["regions"] = int((regions["status"] != "failed").sum())
        extra["patch_rows"] = int((patches["status"] != "failed").sum())
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"wall_s": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(rss_mb), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_scale"))
    ap.add_argument("--sizes", default="2000x1500,20000x15000", help="WxH um, comma-separated")
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()
    if args.stage:
        w, h = (float(v) for v in args.sizes.split("x"))
        print(json.dumps(run_stage(args.stage, args.out, w, h)))
        return
    results: dict[str, dict[str, dict]] = {}
    for size in args.sizes.split(","):
        root = args.out / size
        for stage in STAGES:
            print(f"[{time.strftime('%H:%M:%S')}] {size} um: {stage}", flush=True)
            fig = run_isolated(
                "benchmarks.bench_scale", "--stage", stage, "--out", str(root), "--sizes", size
            )
            results.setdefault(stage, {})[size] = fig
            print(f"  {fig}", flush=True)
    sizes = args.sizes.split(",")
    print("\nstage     " + "".join(f"| {s + ' um':>28} " for s in sizes))
    print("          " + "".join(f"| {'wall s':>12} {'peak RSS MB':>14} " for _ in sizes))
    for stage in STAGES:
        cells = []
        for s in sizes:
            f = results[stage][s]
            cells.append(
                "| reused (run earlier)         "
                if f.get("reused")
                else f"| {f['wall_s']:>12} {f['peak_rss_mb']:>14} "
            )
        print(f"{stage:<10}" + "".join(cells))
    for s in sizes:
        print(f"register s per pair, {s} um: {results['register'][s].get('seconds_per_pair')}")


if __name__ == "__main__":
    main()
