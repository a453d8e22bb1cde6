"""Export a build's patches to the SCORPION release layout ``slide_{i}/sample_{j}/{scanner}.jpg``.

Slides and samples are numbered from 1 in sorted ``slide_id`` / ``region_index`` order;
``index.csv`` maps every folder back to its ``slide_id`` and ``sample_id``. A build with a
``labels`` array (``extract --annotations``) also gets ``label.png`` per sample (the
reference scanner's frame) and ``labels/{scanner}.png`` beside the images, plus
``classes.json`` at the top (docs/contracts.md section 4). ``attrs.json`` keeps the
store's scanners, reference, mpp, region_um and size.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import zarr

from scorpion_build.bench.layout import ATTRS_FILE, CLASSES_FILE, LABEL_STEM, LABELS_DIR
from scorpion_build.labels import LABELS_ARRAY, UNANNOTATED
from scorpion_build.manifest import BuildDir

# Store attributes a release folder keeps (attrs.json): what a reader needs to use the images.
RELEASE_ATTRS = ("scanners", "reference", "mpp", "region_um", "size")


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
    labels = group.get(LABELS_ARRAY)
    # samples of unannotated slides get no label files: all-zero maps would read as background
    bare = set(labels.attrs.get(UNANNOTATED, [])) if labels is not None else set()
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
            labelled = labels is not None and s.index not in bare
            for scanner in ok["scanner"]:
                k = scanners.index(scanner)
                rgb = arr[s.index, k]
                params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpg" else []
                name = folder / f"{scanner}.{fmt}"
                if not cv2.imwrite(str(name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
                    raise OSError(f"{name}: could not be written; check free disk space")
                written.append(scanner)
                if labelled:
                    _write_png(folder / LABELS_DIR / f"{scanner}.png", labels[s.index, k])
            if labelled and written:
                _write_png(folder / f"{LABEL_STEM}.png", labels[s.index, 0])
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
    attrs = {k: v for k, v in group.attrs.items() if k in RELEASE_ATTRS}
    (out / ATTRS_FILE).write_text(json.dumps(attrs, indent=1) + "\n")
    if labels is not None:
        (out / CLASSES_FILE).write_text(json.dumps(list(labels.attrs["classes"])) + "\n")
    return index


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: could not be written; check free disk space")
