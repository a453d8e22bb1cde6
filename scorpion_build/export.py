"""Export a build's patches to the SCORPION release layout ``slide_{i}/sample_{j}/{scanner}.jpg``.

Slides and samples are numbered from 1 in sorted ``slide_id`` / ``region_index`` order;
``index.csv`` maps every folder back to its ``slide_id`` and ``sample_id``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pandas as pd
import zarr

from scorpion_build.manifest import BuildDir


def export_release(
    build_dir: str | Path, out_dir: str | Path, fmt: str = "jpg", quality: int = 95
) -> pd.DataFrame:
    """Write one image per (sample, scanner) whose patch is not ``failed``; return the index."""
    if fmt not in ("jpg", "png"):
        raise ValueError(f"unknown format {fmt!r}; use jpg or png")
    build = BuildDir.at(build_dir)
    patches = build.read("patches")
    group = zarr.open_group(str(build.zarr), mode="r")
    arr = group["patches"]
    scanners = list(group.attrs["scanners"])
    out = Path(out_dir)
    samples = (
        patches[["index", "slide_id", "sample_id", "region_index"]]
        .drop_duplicates("index")
        .sort_values(["slide_id", "region_index"], kind="stable")
    )
    slide_num = {sid: i + 1 for i, sid in enumerate(sorted(samples["slide_id"].unique()))}
    rows = []
    for slide_id, group_rows in samples.groupby("slide_id", sort=True):
        for j, s in enumerate(group_rows.itertuples(), start=1):
            folder = out / f"slide_{slide_num[slide_id]}" / f"sample_{j}"
            folder.mkdir(parents=True, exist_ok=True)
            ok = patches[(patches["index"] == s.index) & (patches["status"] != "failed")]
            written = []
            for scanner in ok["scanner"]:
                rgb = arr[s.index, scanners.index(scanner)]
                params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpg" else []
                name = folder / f"{scanner}.{fmt}"
                if not cv2.imwrite(str(name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
                    raise OSError(f"{name}: could not be written; check free disk space")
                written.append(scanner)
            rows.append(
                {
                    "slide": f"slide_{slide_num[slide_id]}",
                    "sample": f"sample_{j}",
                    "slide_id": slide_id,
                    "sample_id": s.sample_id,
                    "index": s.index,
                    "scanners": ",".join(written),
                }
            )
    index = pd.DataFrame(rows)
    index.to_csv(out / "index.csv", index=False)
    return index
