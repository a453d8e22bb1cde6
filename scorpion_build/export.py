"""Export a build's patches to the SCORPION release layout ``slide_{i}/sample_{j}/{scanner}.jpg``.

Slides and samples are numbered from 1 in sorted ``slide_id`` / ``region_index`` order;
``index.csv`` maps every folder back to its ``slide_id`` and ``sample_id``. The export is
written beside its destination and swapped in when complete, so a failed export never
leaves half a release, and two builds never mix in one folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import pandas as pd

from scorpion_build.integrity import checked_reader, open_patch_array
from scorpion_build.lock import build_lock
from scorpion_build.manifest import BuildDir, ensure_inside, safe_name
from scorpion_build.options import OptionError, check_choice, check_number
from scorpion_build.staging import swap_in

FORMATS = ("jpg", "png")


def check_export_options(fmt: str, quality: int) -> None:
    """Raise ``OptionError`` for an unknown format or a JPEG quality outside 1-100."""
    check_choice("format", fmt, FORMATS)
    check_number("quality", quality, minimum=1, maximum=100, integer=True)


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
            for scanner in ok["scanner"]:
                rgb = read(int(s.index), scanners.index(scanner))
                # scanner names are data: never let one climb out of the sample folder
                name = folder / f"{safe_name(scanner)}.{fmt}"
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
