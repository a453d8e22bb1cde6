"""register and extract: wall time with 1 worker, 2 workers, the default, and a Dask cluster.

Synthetic suites (cached in benchmarks/.cache): 6 slides x 5 scanners and 2 slides x 5
scanners of 2.4 x 1.8 mm; extract samples 8 regions of 400 um per slide at 512 px (the
default 0.78 um/px; 800 um regions would leave only 1-2 per slide of this size). Each
(suite, stage, mode) is timed in its own fresh process around the library call, with
``force`` so everything is recomputed: every run pays its own start-up, as a CLI call
does. Prints the wall time per stage, the speed-up over 1 worker, the CPU seconds of the
run's local processes (helpers included; a Dask cluster's workers are not counted), and
whether the output is identical to the 1-worker output (patches byte for byte;
registration matrices). On a busy machine the CPU column is the steady figure: what the
parallel run costs beyond the 1-worker run.

    .venv/bin/python -m benchmarks.bench_parallel                      # both suites
    .venv/bin/python -m benchmarks.bench_parallel --quick              # 2 small slides
    .venv/bin/python -m benchmarks.bench_parallel --scheduler tcp://host:8786

Figures depend on how busy the machine is: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time

from benchmarks.common import run_isolated, scanned_build, synth_suite

SCANNERS = ("AT2", "GT450", "DP200", "P1000", "Philips")


def suite(slides: int, width_um: float, height_um: float):
    return synth_suite(
        f"parallel_{slides}x{width_um:.0f}x{height_um:.0f}",
        n_slides=slides,
        width_um=width_um,
        height_um=height_um,
        scanners=SCANNERS,
        distortion_um=2.0,
        seed=5,
    )


def build_for(src, mode: str):
    """A scanned build of the suite, one per mode (so stores can be compared afterwards)."""
    return scanned_build(src, f"{src.name}_build_{mode.replace('/', '_').replace(':', '_')}")


def time_stage(
    build: str, stage: str, mode: str, regions: int, region_um: float, size: int
) -> dict:
    """Run one stage with ``force`` in this process; wall seconds and a digest of the output."""
    from scorpion_build.extract import ExtractConfig, extract_build
    from scorpion_build.register.pipeline import register_build

    workers = None if mode in ("default", "scheduler") or "://" in mode else int(mode)
    scheduler = mode if "://" in mode else None
    t0 = time.perf_counter()
    if stage == "register":
        register_build(build, workers=workers, scheduler=scheduler, force=True, progress=False)
        seconds = time.perf_counter() - t0
        digest = _registrations_digest(build)
    else:
        config = ExtractConfig(regions=regions, region_um=region_um, size=size)
        extract_build(
            build, config, workers=workers, scheduler=scheduler, force=True, progress=False
        )
        seconds = time.perf_counter() - t0
        digest = _store_digest(build)
    _stop_forkserver()
    return {"seconds": seconds, "digest": digest}


def _stop_forkserver() -> None:
    """End (and wait for) the forkserver, so the CPU time of it and the helpers it reaped
    counts in this process's children (private API, hence the guard)."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        time.sleep(0.2)  # helpers end on their own right after the run: let them
        stop()


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _registrations_digest(build) -> str:  # noqa: ANN001
    import pandas as pd

    table = pd.read_parquet(f"{build}/manifests/registrations.parquet")
    return hashlib.sha1(
        table[["slide_id", "scanner", "matrix", "status"]].to_json().encode()
    ).hexdigest()


def _store_digest(build) -> str:  # noqa: ANN001
    import zarr

    arr = zarr.open_group(f"{build}/patches.zarr", mode="r")["patches"]
    h = hashlib.sha1()
    for i in range(arr.shape[0]):
        h.update(arr[i].tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", default="6,2", help="suite sizes (slides), comma-separated")
    parser.add_argument("--width-um", type=float, default=2400.0)
    parser.add_argument("--height-um", type=float, default=1800.0)
    parser.add_argument("--regions", type=int, default=8, help="regions per slide")
    parser.add_argument("--region-um", type=float, default=400.0, help="region side (um)")
    parser.add_argument("--size", type=int, default=512, help="patch side (px)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the fastest counts")
    parser.add_argument("--modes", default="1,2,default", help="worker counts or 'default'")
    parser.add_argument("--scheduler", default=None, help="also time a Dask scheduler address")
    parser.add_argument("--stages", default="register,extract")
    parser.add_argument(
        "--quick", action="store_true", help="2 slides of 1.6 x 1.2 mm, 4 regions of 256 px"
    )
    args = parser.parse_args()
    if args.quick:
        args.slides, args.width_um, args.height_um = "2", 1600.0, 1200.0
        args.regions, args.region_um, args.size = 4, 200.0, 256
    modes = args.modes.split(",") + ([args.scheduler] if args.scheduler else [])
    stages = args.stages.split(",")
    print(
        "wall seconds per stage (each run in a fresh process, --force; the fastest of "
        f"{args.repeat}) and the CPU seconds of all its processes; busy machines vary"
    )
    for n in (int(s) for s in args.slides.split(",")):
        src = suite(n, args.width_um, args.height_um)
        print(
            f"\n{n} slides x {len(SCANNERS)} scanners ({args.width_um:g} x {args.height_um:g} um)"
        )
        print(
            f"  {'stage':9s} {'mode':>18s} {'seconds':>8s} {'speed-up':>9s} {'CPU s':>7s}"
            "  identical"
        )
        builds = {mode: build_for(src, mode) for mode in modes}
        for stage in stages:
            base = None
            for mode in modes:
                runs = []
                for _ in range(args.repeat):
                    cpu0 = _cpu_of_children()
                    run = run_isolated(
                        "benchmarks.bench_parallel",
                        "stage",
                        str(builds[mode]),
                        stage,
                        mode,
                        str(args.regions),
                        str(args.region_um),
                        str(args.size),
                    )
                    runs.append({**run, "cpu": _cpu_of_children() - cpu0})
                r = min(runs, key=lambda run: run["seconds"])
                base = base or r
                same = "yes" if r["digest"] == base["digest"] else "NO"
                label = "scheduler" if "://" in mode else f"workers={mode}"
                print(
                    f"  {stage:9s} {label:>18s} {r['seconds']:8.2f} "
                    f"{base['seconds'] / r['seconds']:8.2f}x {r['cpu']:7.1f}  {same}",
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "stage":
        _, _, build, stage, mode, regions, region_um, size = sys.argv
        print(json.dumps(time_stage(build, stage, mode, int(regions), float(region_um), int(size))))
    else:
        main()
