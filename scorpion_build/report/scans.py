"""The scan table: what was read from every scan (vendor, container, reader, mpp and where
it came from, levels, size), with overrides and problems flagged; for the report and for
``scorpion-build scan --show BUILD``. Columns come from ``slides.parquet``
(docs/contracts.md section 3, manifests/SCHEMAS.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

# file suffix -> container, for manifests that do not record it
CONTAINERS = {
    ".svs": "SVS (TIFF)",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ndpi": "NDPI (TIFF)",
    ".mrxs": "MRXS",
    ".bif": "BIF (TIFF)",
    ".scn": "SCN (TIFF)",
    ".vms": "VMS",
    ".vmu": "VMU",
    ".svslide": "SVSLIDE",
    ".dcm": "DICOM",
    ".isyntax": "iSyntax",
    ".czi": "CZI",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
}
COLUMNS = [
    ("slide", "slide_id"),
    ("scanner", "scanner"),
    ("vendor", "vendor"),
    ("container", "container"),
    ("reader", "reader"),
    ("mpp x/y (um/px)", "mpp"),
    ("mpp from", "mpp_source"),
    ("levels", "levels"),
    ("size (px)", "size_px"),
    ("size (mm)", "size_mm"),
    ("status", "status"),
]


def reading(row: dict[str, Any]) -> dict[str, str]:
    """Vendor, container and reader of one ``slides`` row, in words.

    The one place that knows which manifest columns describe how a scan was read; columns a
    newer manifest adds (``container``, ``direct_tiles``) are used when present.
    """
    path = str(row.get("path") or "")
    container = _text(row.get("container")) or CONTAINERS.get(Path(path).suffix.lower(), "?")
    reader = _text(row.get("reader")) or "?"
    if reader == "image":
        reader = "image (whole file)"
    direct = row.get("direct_tiles")
    if isinstance(direct, bool | int) and direct:
        reader += " + direct tiles"
    return {"vendor": _text(row.get("vendor")) or "?", "container": container, "reader": reader}


def scan_rows(slides: pd.DataFrame | None) -> list[dict[str, Any]]:
    """One display row per scan, sorted by slide and scanner.

    Each row has the :data:`COLUMNS` values as text, plus ``flags`` (short words: the mpp was
    overridden or is missing, the scan warned or failed), ``message``, ``reference`` and
    ``path``.
    """
    if slides is None or slides.empty:
        return []
    rows = []
    for row in slides.sort_values(["slide_id", "scanner"]).to_dict("records"):
        source = _text(row.get("mpp_source")) or "?"
        flags = []
        if source == "override":
            flags.append("mpp override")
        elif source == "missing":
            flags.append("no mpp")
        if row.get("status") in ("warn", "failed"):
            flags.append(row["status"])
        w, h = _int(row.get("width")), _int(row.get("height"))
        mx, my = _float(row.get("mpp_x")), _float(row.get("mpp_y"))
        rows.append(
            {
                "slide_id": str(row["slide_id"]),
                "scanner": str(row["scanner"]),
                "reference": bool(row.get("is_reference", False)),
                **reading(row),
                "mpp": f"{mx:.4f} / {my:.4f}" if mx and my else "-",
                "mpp_source": source,
                "levels": str(_int(row.get("level_count")) or "-"),
                "size_px": f"{w} x {h}" if w and h else "-",
                "size_mm": f"{w * mx / 1000:.2f} x {h * my / 1000:.2f}" if w and mx and my else "-",
                "status": str(row.get("status", "")),
                "message": _text(row.get("message")),
                "flags": flags,
                "path": str(row.get("path", "")),
            }
        )
    return rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return number if number > 0 else 0


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def format_table(rows: list[dict[str, Any]], style: Any = None) -> list[str]:
    """The scan table as aligned text lines for a terminal.

    ``style(text, flagged)`` may colour a line (``click.style``); a flagged row (override,
    missing mpp, warn, failed) also ends with its flags and message, so it stands out
    without colour too.
    """
    head = [name for name, _ in COLUMNS]
    cells = [
        [r[key] + (" *" if key == "scanner" and r["reference"] else "") for _, key in COLUMNS]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for row, values in zip(rows, cells, strict=True):
        line = "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
        if row["flags"]:
            note = ", ".join(row["flags"]).upper()
            line += f"  << {note}" + (f": {row['message']}" if row["message"] else "")
        lines.append(style(line, bool(row["flags"])) if style else line)
    lines.append("* reference scanner; MPP OVERRIDE: um/px from the slide table, not the file")
    return lines
