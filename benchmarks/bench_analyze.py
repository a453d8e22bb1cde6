"""analyze: speed and memory of the channel statistics, ResNet50 features and UMAP.

Prints, for a synthetic store of 1024 px patches x 5 scanners (zstd-compressed like
`extract` writes it):
  1. channel statistics throughput (patches/s, read + decode + exact histogram stats) and
     the peak memory of a fresh process for 8 and 32 samples (it should not grow: the store
     is streamed one sample at a time);
  2. ResNet50 feature throughput at 224 px (patches/s) on the chosen device;
  3. UMAP time for the SCORPION protocol's size (2,400 x 2048-D features), including
     numba's one-off compilation;
  4. the projected time of `scorpion-build analyze` on 480 samples x 5 scanners.

Usage: .venv/bin/python benchmarks/bench_analyze.py [--device cpu] [--feature-samples 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import zarr

from benchmarks.common import peak_rss_mb, run_isolated

SCANNERS = ["AT2", "DP200", "GT450", "P1000", "Philips"]
SIZE_PX = 1024
FULL_PATCHES = 480 * len(SCANNERS)


def make_store(root: Path, n: int) -> Path:
    """A build with ``n`` samples: smooth random tissue-like texture, a colour shift per
    scanner, compressed chunks of one patch each."""
    from scorpion_build.manifest import BuildDir, order_columns

    rng = np.random.default_rng(0)
    build = BuildDir.at(root)
    group = zarr.open_group(str(build.zarr), mode="w")
    arr = group.create_array(
        "patches",
        shape=(n, len(SCANNERS), SIZE_PX, SIZE_PX, 3),
        chunks=(1, 1, SIZE_PX, SIZE_PX, 3),
        dtype="uint8",
        fill_value=0,
        compressors=[zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")],
    )
    group.attrs.update(
        {
            "scanners": SCANNERS,
            "reference": "AT2",
            "mpp": 0.78125,
            "region_um": 800.0,
            "size": SIZE_PX,
        }
    )
    rows = []
    for i in range(n):
        small = rng.integers(80, 230, (64, 64, 3), dtype=np.uint8)
        base = cv2.resize(small, (SIZE_PX, SIZE_PX), interpolation=cv2.INTER_CUBIC).astype(int)
        for s, name in enumerate(SCANNERS):
            noise = rng.normal(0, 4, base.shape)
            arr[i, s] = np.clip(base + 6 * (s - 2) + noise, 0, 255).astype(np.uint8)
            rows.append(
                {
                    "index": i,
                    "sample_id": f"s{i // 10}_r{i % 10:02d}",
                    "scanner": name,
                    "scanner_index": s,
                    "similarity": 1.0,
                    "status": "ok",
                    "message": "",
                }
            )
    build.write("patches", order_columns(pd.DataFrame(rows), "patches"))
    return root


def child_stats(root: str) -> None:
    from scorpion_build.analysis.data import open_patches
    from scorpion_build.analysis.stats import collect_stats
    from scorpion_build.manifest import BuildDir

    store = open_patches(BuildDir.at(root))
    start = time.perf_counter()
    collect_stats(store)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"patches": int(store.valid.sum()), "seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        )
    )


def child_features(root: str, device: str) -> None:
    from scorpion_build.analysis.data import open_patches
    from scorpion_build.analysis.features import build_resnet50, extract_features
    from scorpion_build.manifest import BuildDir

    store = open_patches(BuildDir.at(root))
    model = build_resnet50()
    start = time.perf_counter()
    extract_features(store, model, device=device)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"patches": int(store.valid.sum()), "seconds": seconds, "peak_rss_mb": peak_rss_mb()}
        )
    )


def child_umap() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (len(SCANNERS), 2048))
    features = np.stack(
        [centres[s] + rng.normal(0, 1.5, (480, 2048)) for s in range(len(SCANNERS))], axis=1
    ).astype(np.float32)
    start = time.perf_counter()
    from scorpion_build.analysis.embed import umap_embedding

    umap_embedding(features)
    seconds = time.perf_counter() - start
    print(json.dumps({"points": int(features.shape[0] * features.shape[1]), "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--feature-samples", type=int, default=8)
    parser.add_argument("--child", choices=["stats", "features", "umap"])
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.child == "stats":
        return child_stats(args.root)
    if args.child == "features":
        return child_features(args.root, args.device)
    if args.child == "umap":
        return child_umap()

    module = "benchmarks.bench_analyze"
    with tempfile.TemporaryDirectory() as tmp:
        stats = {}
        for n in (8, 32):
            root = make_store(Path(tmp) / f"b{n}", n)
            stats[n] = run_isolated(module, "--child", "stats", "--root", str(root))
        rate = stats[32]["patches"] / stats[32]["seconds"]
        print(
            f"channel stats: {rate:.1f} patches/s (1024 px, read + decode + stats); "
            f"peak RSS {stats[8]['peak_rss_mb']:.0f} MB for 8 samples, "
            f"{stats[32]['peak_rss_mb']:.0f} MB for 32 samples"
        )
        root = make_store(Path(tmp) / "f", args.feature_samples)
        f = run_isolated(
            module, "--child", "features", "--root", str(root), "--device", args.device
        )
        f_rate = f["patches"] / f["seconds"]
        print(
            f"ResNet50 features ({args.device}, 224 px, batch 32): {f_rate:.2f} patches/s, "
            f"peak RSS {f['peak_rss_mb']:.0f} MB"
        )
    u = run_isolated(module, "--child", "umap")
    print(
        f"UMAP of {u['points']} x 2048-D features (PCA 50, incl. numba compile): "
        f"{u['seconds']:.1f} s"
    )
    total = FULL_PATCHES / rate + FULL_PATCHES / f_rate + u["seconds"]
    print(
        f"projected analyze, 480 samples x 5 scanners: stats {FULL_PATCHES / rate / 60:.1f} min"
        f" + features {FULL_PATCHES / f_rate / 60:.1f} min + UMAP {u['seconds'] / 60:.1f} min"
        f" = {total / 60:.1f} min (features and UMAP cached on re-runs)"
    )


if __name__ == "__main__":
    main()
