"""Export a build's patches to the SCORPION release layout ``slide_{i}/sample_{j}/{scanner}.jpg``.

Slides and samples are numbered from 1 in sorted ``slide_id`` / ``region_index`` order;
``index.csv`` maps every folder back to its ``slide_id`` and ``sample_id``. A build with a
``labels`` array (``extract --annotations``) also gets ``label.png`` per sample (the
reference scanner's frame) and ``labels/{scanner}.png`` beside the images, plus
``classes.json`` at the top (docs/contracts.md section 4). ``attrs.json`` keeps the
store's scanners, reference, mpp, region_um and size. The export is written beside its
destination and swapped in when complete, so a failed export never leaves half a release,
and two builds never mix in one folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import zarr

from scorpion_build.bench.layout import ATTRS_FILE, CLASSES_FILE, LABEL_STEM, LABELS_DIR
from scorpion_build.integrity import checked_reader, open_patch_array
from scorpion_build.labels import LABELS_ARRAY, UNANNOTATED
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, ensure_inside, safe_name
from scorpion_build.options import OptionError
from scorpion_build.settings import check_settings, setting
from scorpion_build.staging import swap_in

FORMATS = ("jpg", "png")
# Store attributes a release folder keeps (attrs.json): what a reader needs to use the images.
RELEASE_ATTRS = ("scanners", "reference", "mpp", "region_um", "size")


@dataclass(frozen=True)
class ExportOptions:
    """How the release's images are written (``scorpion-build export``, a pipeline's
    ``export`` section)."""

    format: str = setting("jpg", "Image format of the patches.", choices=FORMATS)
    quality: int = setting(95, "JPEG quality, 1-100.", minimum=1, maximum=100)

    def __post_init__(self) -> None:
        check_settings(self)


def check_export_options(fmt: str, quality: int) -> None:
    """Raise ``OptionError`` for an unknown format or a JPEG quality outside 1-100."""
    ExportOptions(format=fmt, quality=quality)


def check_destination(out: Path) -> None:
    """``out`` must be absent, empty, or a previous export (it has ``index.csv``)."""
    if out.is_symlink():
        raise OptionError("out_dir", str(out), "is a symbolic link; export into a real folder")
    if out.exists() and not out.is_dir():
        raise OptionError("out_dir", str(out), "exists and is not a folder; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.csv").is_file():
        raise OptionError(
            "out_dir",
            str(out),
            "folder is not empty and is not a scorpion-build export (no index.csv); choose "
            "an empty or new folder",
        )


def export_release(
    build_dir: str | Path, out_dir: str | Path, fmt: str = "jpg", quality: int = 95
) -> pd.DataFrame:
    """Write one image per (sample, scanner) whose patch is not ``failed``; return the index.

    A previous export in ``out_dir`` is replaced as a whole once the new one is complete.

    Raises
    ------
    OptionError
        Bad format or quality, or ``out_dir`` holds something other than an export.
    CorruptPatchError
        A patch's chunk is missing or damaged (``scorpion-build verify BUILD --repair``).
    """
    check_export_options(fmt, quality)
    build = BuildDir.at(build_dir)
    out = Path(out_dir).expanduser().absolute()
    check_destination(out)
    real = out.parent.resolve() / out.name  # the folder's real place, the link itself kept
    inside = real.is_relative_to(build.root)
    if inside:
        ensure_inside(build.root, real)
    with build_lock(build.root, readonly_ok=not inside):
        patches = build.read("patches")
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob(f".{out.name}.*.partial"):  # from a killed export
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        try:
            index = _write_release(build, patches, tmp, fmt, quality)
            swap_in({tmp: out}, out.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return index


def _write_release(
    build: BuildDir, patches: pd.DataFrame, out: Path, fmt: str, quality: int
) -> pd.DataFrame:
    array, scanners = open_patch_array(build.zarr, build.root)
    read = checked_reader(array, patches, scanners, str(build.root))
    group = zarr.open_group(str(build.zarr), mode="r")  # its metadata was just checked
    labels = group.get(LABELS_ARRAY)
    # samples of unannotated slides get no label files: all-zero maps would read as background
    bare = set(labels.attrs.get(UNANNOTATED, [])) if labels is not None else set()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpg" else []
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
                rgb = read(int(s.index), k)
                # scanner names are data: never let one climb out of the sample folder
                name = folder / f"{safe_name(scanner)}.{fmt}"
                if not cv2.imwrite(str(name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
                    raise OSError(f"{name}: could not be written; check free disk space")
                written.append(scanner)
                if labelled:
                    _write_png(
                        folder / LABELS_DIR / f"{safe_name(scanner)}.png", labels[s.index, k]
                    )
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
