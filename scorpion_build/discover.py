"""Find the scans in a folder laid out ``DIR/{slide_id}/{scanner}.{ext}`` as real exports look.

Scanner software leaves more than one file per scan: OME-TIFF's double suffix, MIRAX's
``.mrxs`` beside its data folder (Olympus ``.vsi`` and Hamamatsu ``.vms`` alike), DICOM
series folders, label and overview pictures, XML and JSON sidecars. :func:`discover` turns
such a folder into slide-table rows and one-line notes on what it skipped. The rules are in
``docs/own-dataset.md``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# What the readers open, keyed by the suffix that names the scanner when removed
# (longest first, so "AT2.ome.tif" gives scanner "AT2", not "AT2.ome").
SLIDE_SUFFIXES = (
    ".ome.tiff",
    ".ome.tif",
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
)
# Pictures scanners save next to a scan (slide label, macro/overview photo, thumbnail):
# a name with one of these words as a separate token is not a scan of the tissue.
AUX_IMAGE_WORDS = ("label", "macro", "overview", "thumbnail", "thumb", "preview")
# Hamamatsu VMS/VMU: the index file names JPEG tiles, a map picture and an .opt file.
VMS_PART_SUFFIXES = (".jpg", ".jpeg", ".opt")
_AUX_RE = re.compile(r"(^|[^a-z0-9])(" + "|".join(AUX_IMAGE_WORDS) + r")([^a-z0-9]|$)")


@dataclass
class Discovery:
    """Slide-table rows found in a folder, and a one-line note per entry skipped."""

    rows: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def slide_suffix(name: str) -> str | None:
    """The slide suffix ``name`` ends with (lower case, ``.ome.tif`` whole), or None."""
    lower = name.lower()
    return next((s for s in SLIDE_SUFFIXES if lower.endswith(s)), None)


def discover(root: str | os.PathLike, ignore: tuple[str, ...] = ()) -> Discovery:
    """Scans under ``root`` (one sub-folder per slide) as ``slide_id, scanner, path`` rows.

    Parameters
    ----------
    root : folder holding one sub-folder per glass slide.
    ignore : glob patterns; an entry whose name or path relative to ``root`` matches one is
        dropped without a note (e.g. ``"*_old.svs"``, ``"s7/*"``).
    """
    root = Path(root)
    found = Discovery()
    for entry in sorted(root.iterdir()):
        if _ignored(entry, root, ignore):
            continue
        if entry.name.startswith("."):  # .DS_Store, .snapshot/, editor and sync folders
            found.skipped.append(f"{entry}: skipped, a hidden entry")
        elif entry.is_dir():
            _discover_slide(entry, root, ignore, found)
        else:
            found.skipped.append(
                f"{entry}: skipped, not inside a slide folder (layout is "
                f"{root}/<slide_id>/<scanner>.<ext>)"
            )
    return found


def _discover_slide(folder: Path, root: Path, ignore: tuple[str, ...], found: Discovery) -> None:
    entries = [e for e in sorted(folder.iterdir()) if not _ignored(e, root, ignore)]
    parts = _parts_of_other_scans(entries)
    for entry in entries:
        scan = None if entry.name in parts else _scan_of(entry)
        if isinstance(scan, str):
            found.skipped.append(f"{entry}: skipped, {scan}")
        elif scan is not None:
            found.rows.append({"slide_id": folder.name, **scan})


def _parts_of_other_scans(entries: list[Path]) -> set[str]:
    """Names of the entries that belong to a multi-file scan beside them: MIRAX ``X.mrxs``
    has its data folder ``X/``, Olympus ``X.vsi`` its ``_X_/``, Hamamatsu ``X.vms``/``X.vmu``
    its ``X*.jpg``/``X.opt`` image and map files."""
    parts: set[str] = set()
    for entry in entries:
        suffix = slide_suffix(entry.name)
        stem = entry.name[: -len(suffix)] if suffix else ""
        if suffix == ".mrxs":
            parts.add(stem)
        elif suffix == ".vsi":
            parts.add(f"_{stem}_")
        elif suffix in (".vms", ".vmu"):
            parts |= {
                e.name
                for e in entries
                if e.name.startswith((f"{stem}_", f"{stem}."))
                and e.suffix.lower() in VMS_PART_SUFFIXES
            }
    return parts


def _scan_of(entry: Path) -> dict | str:
    """The scan an entry of a slide folder is, or why it is not one (str)."""
    if entry.is_dir():
        series = sorted(
            f for f in entry.iterdir() if f.is_file() and slide_suffix(f.name) == ".dcm"
        )
        if series:  # a DICOM WSI series: OpenSlide finds the other files from any one of them
            return {"scanner": entry.name, "path": str(series[0].resolve())}
        return "a folder that is neither a DICOM series nor a scan's data folder"
    if entry.name.startswith("."):
        return "a hidden file"
    suffix = slide_suffix(entry.name)
    if suffix is None:
        return f"not a slide file ({entry.suffix or 'no extension'})"
    scanner = entry.name[: -len(suffix)]
    if _AUX_RE.search(scanner.lower()):
        return "a label/overview picture, not a scan of the tissue"
    return {"scanner": scanner, "path": str(entry.resolve())}


def _ignored(entry: Path, root: Path, ignore: tuple[str, ...]) -> bool:
    rel = entry.relative_to(root).as_posix()
    return any(fnmatch.fnmatch(entry.name, g) or fnmatch.fnmatch(rel, g) for g in ignore)
