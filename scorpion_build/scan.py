"""Read a slide table (directory or CSV), inspect every scan, and check the set for problems.

The result is ``slides.parquet``: one row per (slide_id, scanner) with what the reader saw and
a status. A bad row is ``failed`` with a message; good rows are kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from scorpion_build.discover import SLIDE_SUFFIXES, discover
from scorpion_build.manifest import is_safe_name, order_columns
from scorpion_build.mpp import coarse_note, mpp_problem, parse_override, ratio_note
from scorpion_build.slide import Slide, SlideError
from scorpion_build.tissue import FLUORESCENCE_NOTE, is_fluorescence

SCORPION_SCANNERS = ("AT2", "GT450", "DP200", "P1000", "Philips")
# Slide formats OpenSlide cannot read: the format's name and how to convert it to something
# it reads (pyramidal OME-TIFF, or DICOM WSI).
UNREADABLE_FORMATS = {
    ".isyntax": ("Philips iSyntax", "isyntax2raw + raw2ometiff (Glencoe Software)"),
    ".vsi": ("Olympus VSI", "bfconvert -pyramid-resolutions 6 -pyramid-scale 2 or QuPath"),
    ".czi": ("Zeiss CZI", "bfconvert -pyramid-resolutions 6 -pyramid-scale 2 or QuPath"),
}

# Property names (openslide, tiffslide, vendor: aperio.MPP) that carry a level-0 mpp.
MPP_KEYS = (".mpp-x", ".mpp-y", ".mpp")
log = logging.getLogger(__name__)


class SlideTableError(ValueError):
    pass


def read_slide_table(
    source: str | os.PathLike,
    ignore: tuple[str, ...] = (),
    skipped: list[str] | None = None,
) -> pd.DataFrame:
    """A slide table from a CSV (``slide_id,scanner,path[,mpp]``) or a directory laid out
    ``{slide_id}/{scanner}.{ext}`` (rules in :mod:`scorpion_build.discover`).

    Paths are made absolute (relative to the CSV). For a directory, entries matching an
    ``ignore`` glob are dropped, and a one-line note per other entry that is not a scan is
    logged and appended to ``skipped`` when given.
    """
    source = Path(source)
    if source.is_dir():
        found = discover(source, ignore)
        for note in found.skipped:
            log.info(note)
        if skipped is not None:
            skipped += found.skipped
        if not found.rows:
            raise SlideTableError(
                f"{source}: no slides found; expected {source}/<slide_id>/<scanner>.<ext> "
                f"(extensions {', '.join(SLIDE_SUFFIXES)}) or a CSV slide table"
            )
        table = pd.DataFrame(found.rows)
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
    _check_blank_cells(table, source)
    if "mpp" not in table.columns:
        table["mpp"] = np.nan  # cells are checked per scan (inspect_slide), not coerced here
    table["path"] = [
        str(p) if "://" in str(p) else str((source.parent / str(p)).resolve())
        for p in table["path"]
    ]
    return table[["slide_id", "scanner", "path", "mpp"]].copy()


def _check_blank_cells(table: pd.DataFrame, source: Path) -> None:
    """Every row needs a slide_id, a scanner and a path: name the CSV lines that lack one."""
    for col in ("slide_id", "scanner", "path"):
        blank = table[col].isna() | (table[col].astype(str).str.strip() == "")
        if blank.any():
            lines = ", ".join(str(i + 2) for i in table.index[blank][:5])  # +1 header, +1 base
            raise SlideTableError(
                f"{source}: blank '{col}' on line(s) {lines}; fill it in or delete the row"
            )


def file_stat(path: str) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a slide file, (-1, -1) if unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return int(st.st_size), int(st.st_mtime_ns)


def file_changed(row: dict) -> str:
    """Why a slides-manifest row no longer describes its file ("" when it still does).

    Register and extract call this before trusting a scan: a slide replaced, changed or
    deleted after ``scan`` must not be served from a cache.
    """
    path = str(row.get("path", ""))
    if "://" in path or row.get("status") == "failed":
        return ""  # remote files are not tracked; failed scans are not used anyway
    size, mtime = file_stat(path)
    if size < 0:
        return f"{path} is missing (it was there at scan); restore it, or re-run scan"
    known_size = row.get("file_size")
    known_mtime = row.get("file_mtime_ns")
    if known_size is not None and not pd.isna(known_size) and int(known_size) != size:
        return f"{path}: file changed since scan (size); re-run scan"
    if known_mtime is not None and not pd.isna(known_mtime) and int(known_mtime) != mtime:
        return f"{path}: file changed since scan (modification time); re-run scan"
    return ""


def inspect_slide(path: str, mpp: object = None) -> dict:
    """Open a scan, read one tile at the coarsest and finest level to prove it decodes, and
    check its mpp (``mpp``: the slide table's override, um/px) and its background."""
    size, mtime = file_stat(path)
    row: dict = {"path": path, "file_size": size, "file_mtime_ns": mtime}
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
    try:
        override = parse_override(mpp)
    except ValueError as exc:
        return {**row, "status": "failed", "message": f"{path}: {exc}; give level-0 um/px"}
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
            coarse = _probe_decode(slide)
            problem = _mpp_problem(slide)
    except SlideError as exc:
        row.update(status="failed", message=str(exc))
        return row
    if problem:
        return {**row, "status": "failed", "message": problem}
    notes = [FLUORESCENCE_NOTE] if is_fluorescence(coarse) else []
    notes += [n for n in [coarse_note(row["mpp_x"])] if n]
    if notes:
        return {**row, "status": "warn", "message": f"{path}: {'; '.join(notes)}"}
    row.update(status="ok", message="")
    return row


def _mpp_problem(slide: Slide) -> str | None:
    """Why the slide's mpp is unusable (missing, not a positive number, implausible)."""
    where = "in the slide table" if slide.mpp_source == "override" else "in the file's metadata"
    if not slide.has_mpp:  # an override always gives an mpp: this one is the file's
        raw = {k: v for k, v in slide.properties.items() if k.lower().endswith(MPP_KEYS)}
        if raw:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(raw.items()))
            return (
                f"{slide.path}: mpp in the file's metadata is not a positive number ({shown}); "
                "set the level-0 um/px in the slide table `mpp` column"
            )
        try:
            _ = slide.mpp
        except SlideError as exc:  # MissingMppError: its message names the fix
            return str(exc)
    problem = mpp_problem(*slide.mpp)
    if problem:
        return f"{slide.path}: {problem} {where}; set the level-0 um/px in the slide table `mpp`"
    return None


def _probe_decode(slide: Slide) -> np.ndarray:
    """Read a corner of the coarsest level (returned) and level 0's centre and end."""
    last = slide.level_count - 1
    w, h = slide.level_dimensions[last]
    coarse = slide.read(last, (0, 0, min(w, 512), min(h, 512)))
    w0, h0 = slide.dimensions
    # centre and last tile of level 0: truncated files fail at their end
    slide.read(0, (w0 // 2, h0 // 2, 64, 64))
    slide.read(0, (max(0, w0 - 64), max(0, h0 - 64), 64, 64))
    return coarse


def check_table(table: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Set-level checks on inspected rows: duplicates, missing reference, mpp far from the
    reference's (a `warn`)."""
    table = table.copy()
    table["is_reference"] = table["scanner"] == reference

    def fail(mask: pd.Series, message: str) -> None:
        ok = mask & (table["status"] != "failed")
        table.loc[ok, "status"] = "failed"
        table.loc[ok, "message"] = message

    for col in ("slide_id", "scanner"):
        for idx in table.index[~table[col].map(is_safe_name)]:
            fail(
                table.index == idx,
                f"{col} {table.at[idx, col]!r} is not a safe name: it becomes part of file "
                "names, so use only letters, digits, '-', '_' and '.' (not first)",
            )
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
        _mpp_ratio_warnings(table, group, slide_id)
    return table


def _mpp_ratio_warnings(table: pd.DataFrame, group: pd.DataFrame, slide_id: str) -> None:
    """`warn` (never fail: 20x beside 40x is normal) scans far from the reference's mpp."""
    usable = group[group["status"] != "failed"]
    ref_mpp = usable.loc[usable["is_reference"], "mpp_x"].dropna()
    if ref_mpp.empty:
        return
    for idx, value in usable.loc[~usable["is_reference"], "mpp_x"].dropna().items():
        note = ratio_note(float(value), float(ref_mpp.iloc[0]), slide_id)
        if note:
            before = table.loc[idx, "message"]
            table.loc[idx, "message"] = f"{before}; {note}" if before else note
            table.loc[idx, "status"] = "warn"


def scan(
    source: str | os.PathLike,
    reference: str = "AT2",
    ignore: tuple[str, ...] = (),
    skipped: list[str] | None = None,
) -> pd.DataFrame:
    """Slide table -> inspected and checked ``slides`` manifest rows.

    ``ignore`` and ``skipped`` apply to a directory source, as in :func:`read_slide_table`.
    """
    table = read_slide_table(source, ignore, skipped)
    inspected = [inspect_slide(r.path, r.mpp) for r in table.itertuples()]
    out = pd.concat(
        [table[["slide_id", "scanner"]].reset_index(drop=True), pd.DataFrame(inspected)], axis=1
    )
    for col in ("width", "height", "level_count", "file_size", "file_mtime_ns"):
        out[col] = pd.to_numeric(out.get(col), errors="coerce").fillna(-1).astype("int64")
    for col in ("mpp_x", "mpp_y"):
        out[col] = pd.to_numeric(out.get(col), errors="coerce").astype("float64")
    out = check_table(out, reference)
    return order_columns(out, "slides").sort_values(["slide_id", "scanner"], kind="stable")
