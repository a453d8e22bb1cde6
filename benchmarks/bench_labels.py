"""Label maps carried to every scanner, against the exact truth: IoU per scanner and class.

Synthesises slides whose non-reference scans are turned 90 and 180 degrees, mirrored and
restained (plus a few um of non-rigid distortion and stitching shifts), builds them with
``extract --annotations`` from synth's true classes, and compares every patch's label map
with the truth-warped polygons (the same polygons through the exact reference -> scanner
map). Prints, per scanner and class, the pooled IoU and the worst patch's IoU, and the
time to rasterise one label map.

    python benchmarks/bench_labels.py --out /tmp/bench_labels
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from scorpion_build import geometry as geo
from scorpion_build.annotations import load_build_annotations
from scorpion_build.extract import ExtractConfig, extract_build
from scorpion_build.labels import sample_label_map
from scorpion_build.manifest import BuildDir
from scorpion_build.register import register_build
from scorpion_build.scan import scan
from scorpion_build.synth import Scenario, SynthConfig, load_truth, synthesize
from scorpion_build.synth.annotations import ANNOTATIONS_DIR, read_features, truth_label_map

SCENARIOS = (
    Scenario("rot90", "GT450"),
    Scenario("mirror", "DP200"),
    Scenario("rot180", "P1000"),
    Scenario("strong-stain", "Philips"),
)


def build(out: Path, slides: int, regions: int, region_um: float, size: int) -> Path:
    synth = out / "synth"
    if not (synth / "slides.csv").is_file():
        synthesize(synth, SynthConfig(n_slides=slides, seed=11, scenarios=SCENARIOS))
    bd = BuildDir.at(out / "build")
    if not bd.manifest("registrations").is_file():
        bd.write("slides", scan(synth / "slides.csv"))
        register_build(bd.root, progress=False)
    annotations = load_build_annotations(bd.read("slides"), synth / ANNOTATIONS_DIR)
    config = ExtractConfig(regions=regions, region_um=region_um, size=size)
    t0 = time.perf_counter()
    extract_build(bd.root, config, progress=False, annotations=annotations)
    print(f"extract with labels: {time.perf_counter() - t0:.1f} s")
    return bd.root


def measure(out: Path, root: Path) -> pd.DataFrame:
    group = zarr.open_group(str(root / "patches.zarr"), mode="r")
    classes, size = list(group["labels"].attrs["classes"]), int(group.attrs["size"])
    patches = pd.read_parquet(root / "manifests" / "patches.parquet")
    rows, seconds = [], []
    annotations = load_build_annotations(
        BuildDir.at(root).read("slides"), out / "synth" / ANNOTATIONS_DIR
    )
    for r in patches[patches["status"] != "failed"].itertuples():
        truth = load_truth(out / "synth", r.slide_id)
        p2s = geo.from_six(r.patch_to_slide)
        want = truth_label_map(
            truth, read_features(out / "synth", r.slide_id), classes, r.scanner, p2s, size
        )
        got = group["labels"][r.index, r.scanner_index]
        if r.scanner_index == 0:
            t0 = time.perf_counter()
            sample_label_map(annotations.by_slide[r.slide_id], p2s, size)
            seconds.append(time.perf_counter() - t0)
        for c in range(1, len(classes)):
            inter, union = np.sum((got == c) & (want == c)), np.sum((got == c) | (want == c))
            rows.append((r.scanner, classes[c], inter, union))
    print(f"rasterising one {size} px label map: {1000 * np.median(seconds):.1f} ms (median)")
    return pd.DataFrame(rows, columns=["scanner", "class", "inter", "union"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_labels"))
    parser.add_argument("--slides", type=int, default=2)
    parser.add_argument("--regions", type=int, default=5)
    parser.add_argument("--region-um", type=float, default=400.0)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    root = build(args.out, args.slides, args.regions, args.region_um, args.size)
    table = measure(args.out, root)
    table = table[table["union"] > 0]
    table["iou"] = table["inter"] / table["union"]
    pooled = table.groupby(["scanner", "class"])[["inter", "union"]].sum()
    summary = (pooled["inter"] / pooled["union"]).rename("pooled IoU").to_frame()
    summary["worst patch IoU"] = table.groupby(["scanner", "class"])["iou"].min()
    summary["patches"] = table.groupby(["scanner", "class"]).size()
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
