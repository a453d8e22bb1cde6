"""Read a slide table (directory or CSV), inspect every scan, and check the set for problems.

The result is ``slides.parquet``: one row per (slide_id, scanner) with what the reader saw and
a status. A bad row is ``failed`` with a message; good rows are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build.manifest import order_columns
from scorpion_build.slide import Slide, SlideError

SCORPION_SCANNERS = ("AT2", "GT450", "DP200", "P1000", "Philips")
SLIDE_SUFFIXES = {
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".mrxs",
    ".bif",
    ".vms",
    ".vmu",
    ".scn",
    ".svslide",
    ".dcm",
    ".isyntax",
    ".czi",
    ".vsi",
    ".png",
    ".jpg",
    ".jpeg",
}
# Slide formats OpenSlide cannot read: the format's name and how to convert it to something
# it reads (pyramidal OME-TIFF, or DICOM WSI).
UNREADABLE_FORMATS = {
    ".isyntax": ("Philips iSyntax", "isyntax2raw + raw2ometiff (Glencoe Software)"),
    ".vsi": ("Olympus VSI", "bfconvert -pyramid-resolutions 6 -pyramid-scale 2 or QuPath"),
    ".czi": ("Zeiss CZI", "bfconvert -pyramid-resolutions 6 -pyramid-scale 2 or QuPath"),
}
# A scanner's mpp more than this factor away from the reference's is almost certainly a
# metadata error (e.g. 20x value on a 40x scan), not a real optical difference.
MPP_MAX_RATIO = 1.5


class SlideTableError(ValueError):
    pass


def read_slide_table(source: str | os.PathLike) -> pd.DataFrame:
    """A slide table from a CSV (``slide_id,scanner,path[,mpp]``) or a directory
    laid out ``{slide_id}/{scanner}.{ext}``. Paths are made absolute (relative to the CSV)."""
    source = Path(source)
    if source.is_dir():
        rows = [
            {"slide_id": f.parent.name, "scanner": f.stem, "path": str(f.resolve())}
            for f in sorted(source.glob("*/*"))
            if f.is_file() and f.suffix.lower() in SLIDE_SUFFIXES
        ]
        if not rows:
            raise SlideTableError(
                f"{source}: no slides found; expected {source}/<slide_id>/<scanner>.<ext> "
                f"(extensions {', '.join(sorted(SLIDE_SUFFIXES))}) or a CSV slide table"
            )
        table = pd.DataFrame(rows)
        table["mpp"] = np.nan
        return table
    if not source.is_file():
        raise SlideTableError(f"{source}: no such file or directory")
    try:
        table = pd.read_csv(source, dtype={"slide_id": str, "scanner": str, "path": str})
    except Exception as exc:
        raise SlideTableError(f"{source}: cannot be read as CSV ({exc})") from exc
    missing = {"slide_id", "scanner", "path"} - set(table.columns)
    if missing:
        raise SlideTableError(
            f"{source}: missing column(s) {', '.join(sorted(missing))}; a slide table has "
            "columns slide_id,scanner,path and optionally mpp"
        )
    if "mpp" not in table.columns:
        table["mpp"] = np.nan
    table["mpp"] = pd.to_numeric(table["mpp"], errors="coerce")
    table["path"] = [
        str(p) if "://" in str(p) else str((source.parent / str(p)).resolve())
        for p in table["path"]
    ]
    return table[["slide_id", "scanner", "path", "mpp"]].copy()


def inspect_slide(path: str, mpp: float | None = None) -> dict:
    """Open a scan and read one tile at the coarsest and finest level to prove it decodes."""
    row: dict = {"path": path, "file_size": _file_size(path)}
    unreadable = UNREADABLE_FORMATS.get(Path(path).suffix.lower())
    if unreadable is not None:
        name, tool = unreadable
        row.update(
            status="failed",
            message=f"{path}: {name} is a format OpenSlide cannot read; convert it to "
            f"pyramidal OME-TIFF ({tool}) or to DICOM WSI (e.g. wsidicomizer) and list "
            "the converted file instead",
        )
        return row
    override = None if mpp is None or not np.isfinite(mpp) else float(mpp)
    try:
        with Slide(path, mpp=override) as slide:
            row.update(
                reader=slide.reader,
                vendor=slide.vendor,
                width=slide.dimensions[0],
                height=slide.dimensions[1],
                level_count=slide.level_count,
                mpp_source=slide.mpp_source,
            )
            if slide.has_mpp:
                row["mpp_x"], row["mpp_y"] = slide.mpp
            _probe_decode(slide)
            if not slide.has_mpp:
                _ = slide.mpp  # raises MissingMppError, whose message names the fix
    except SlideError as exc:
        row.update(status="failed", message=str(exc))
        return row
    row.update(status="ok", message="")
    return row


def _probe_decode(slide: Slide) -> None:
    last = slide.level_count - 1
    w, h = slide.level_dimensions[last]
    slide.read(last, (0, 0, min(w, 512), min(h, 512)))
    w0, h0 = slide.dimensions
    # centre and last tile of level 0: truncated files fail at their end
    slide.read(0, (w0 // 2, h0 // 2, 64, 64))
    slide.read(0, (max(0, w0 - 64), max(0, h0 - 64), 64, 64))


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def check_table(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Set-level checks on inspected rows: duplicates, missing reference, mpp disagreement."""
    table = table.copy()
    table["is_reference"] = table["scanner"] == reference

    def fail(mask: pd.Series, message: str) -> None:
        ok = mask & (table["status"] != "failed")
        table.loc[ok, "status"] = "failed"
        table.loc[ok, "message"] = message

    dup = table.duplicated(["slide_id", "scanner"], keep=False)
    for (slide_id, scanner), _ in table[dup].groupby(["slide_id", "scanner"]):
        sel = dup & (table["slide_id"] == slide_id) & (table["scanner"] == scanner)
        paths = ", ".join(table.loc[sel, "path"])
        fail(sel, f"duplicate (slide {slide_id}, scanner {scanner}): {paths}; keep one row")

    for slide_id, group in table.groupby("slide_id"):
        sel = table["slide_id"] == slide_id
        ref_ok = group["is_reference"] & (group["status"] != "failed")
        if not group["is_reference"].any():
            fail(
                sel,
                f"slide {slide_id} has no {reference} scan (the reference scanner); add "
                f"it to the slide table or choose another with --reference",
            )
        elif not ref_ok.any():
            fail(
                sel & ~table["is_reference"],
                f"the reference ({reference}) scan of slide {slide_id} failed; fix it first",
            )
        # compare with the reference scan's mpp (the one everything is registered to)
        mpp = group["mpp_x"].where(group["status"] != "failed").dropna()
        ref_mpp = mpp[group.loc[mpp.index, "is_reference"]]
        if len(mpp) >= 2 and len(ref_mpp):
            expected = float(ref_mpp.iloc[0])
            for idx, value in mpp.items():
                if max(value / expected, expected / value) > MPP_MAX_RATIO:
                    fail(
                        table.index == idx,
                        f"mpp {value:.4g} um/px disagrees with the reference scan of slide "
                        f"{slide_id} ({expected:.4g} um/px); check the metadata or set the "
                        "`mpp` column in the slide table",
                    )
    return table


def scan(source: str | os.PathLike, reference: str = "AT2") -> pd.DataFrame:
    """Slide table -> inspected and checked ``slides`` manifest rows."""
    table = read_slide_table(source)
    inspected = [inspect_slide(r.path, r.mpp) for r in table.itertuples()]
    out = pd.concat(
        [table[["slide_id", "scanner"]].reset_index(drop=True), pd.DataFrame(inspected)], axis=1
    )
    for col in ("width", "height", "level_count", "file_size"):
        out[col] = pd.to_numeric(out.get(col), errors="coerce").fillna(-1).astype("int64")
    for col in ("mpp_x", "mpp_y"):
        out[col] = pd.to_numeric(out.get(col), errors="coerce").astype("float64")
    out = check_table(out, reference)
    return order_columns(out, "slides").sort_values(["slide_id", "scanner"], kind="stable")
