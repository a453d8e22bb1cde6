"""Slide maps: where the regions were drawn, on every scan of a slide.

Per slide, the reference scan's thumbnail with its tissue outline and every sampled region
(numbered, coloured by status), and per other scanner that scanner's own thumbnail with the
same regions carried through its registration (``registrations.parquet`` ``matrix``,
reference level-0 px -> this scanner's level-0 px; docs/contracts.md sections 1-2). A
person sees at once whether the boxes land on the same tissue, turned or mirrored as that
scan is. Written to ``BUILD/qc/slides/{slide_id}.png`` (docs/contracts.md section 3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from scorpion_build import geometry as geo
from scorpion_build.manifest import BuildDir
from scorpion_build.palette import STATUS_RGB, TISSUE_OUTLINE_RGB, WHITE, mpl
from scorpion_build.register.thumbs import View, read_view
from scorpion_build.slide import Slide, SlideError

log = logging.getLogger(__name__)

MAP_LONG_SIDE_PX = 700  # thumbnail long side: regions of a few hundred um stay visible
PANEL_IN = 4.2  # panel width, inches at 100 dpi
COLUMNS = 3
_SEVERITY = {"ok": 0, "warn": 1, "failed": 2}
ORIENTATIONS = {
    0: "same orientation as the reference",
    1: "turned 90 deg",
    2: "turned 180 deg",
    3: "turned 270 deg",
}


@dataclass
class Box:
    """One region on one scan: its number, status and corners in thumbnail px (top-left,
    top-right, bottom-right, bottom-left of the region as the reference sees it)."""

    index: int
    status: str
    corners: np.ndarray


@dataclass
class Panel:
    """One scan's thumbnail, its tissue mask (outlined on the reference) and its boxes;
    ``rgb`` is None when the scan could not be read or registered (``caption`` says why)."""

    scanner: str
    caption: str
    rgb: np.ndarray | None = None
    mask: np.ndarray | None = None
    boxes: list[Box] = field(default_factory=list)
    reference: bool = False


def region_corners(region: pd.Series | dict, ref_mpp: tuple[float, float]) -> np.ndarray:
    """(4, 2) corners of a region's square in reference level-0 px, from its um position."""
    x0, y0 = region["x_um"] / ref_mpp[0], region["y_um"] / ref_mpp[1]
    w, h = region["region_um"] / ref_mpp[0], region["region_um"] / ref_mpp[1]
    return geo.box_corners(x0, y0, w, h)


def describe_orientation(index: Any) -> str:
    """Words for a registration's dihedral orientation (0-3 turns, 4-7 mirrored)."""
    if index is None or not np.isfinite(float(index)):
        return ""
    k = int(index)
    turn = ORIENTATIONS.get(k % 4, "")
    return turn if k < 4 else "mirrored" + ("" if k == 4 else ", " + turn)


def slide_panels(slide_id: str, tables: dict[str, pd.DataFrame | None]) -> list[Panel]:
    """The reference panel first, then one per other scanner (sorted), for ``slide_id``."""
    slides = tables["slides"]
    scans = slides[slides["slide_id"] == slide_id].sort_values("scanner")
    ref_rows = scans[scans["is_reference"].astype(bool)]
    if ref_rows.empty:
        return []
    ref = ref_rows.iloc[0]
    regions = _rows(tables.get("regions"), slide_id).sort_values("region_index")
    # a failed region may have no place (no region fitted the slide): nothing to draw
    placed = regions[["x_um", "y_um", "region_um"]].apply(pd.to_numeric, errors="coerce")
    regions = regions[np.isfinite(placed.to_numpy(float)).all(axis=1)]
    regs = _rows(tables.get("registrations"), slide_id).set_index("scanner")
    status = _patch_status(tables.get("patches"), slide_id)
    ref_mpp = (float(ref["mpp_x"]), float(ref["mpp_y"]))
    corners0 = {int(r["region_index"]): region_corners(r, ref_mpp) for _, r in regions.iterrows()}
    region_status = dict(zip(regions["region_index"].astype(int), regions["status"], strict=True))
    panels = []
    for _, scan in pd.concat([ref_rows.iloc[:1], scans[scans.index != ref.name]]).iterrows():
        is_ref = scan.name == ref.name
        matrix, caption = _matrix(scan, regs, is_ref)
        panel = Panel(scan["scanner"], caption, reference=is_ref)
        panels.append(panel)
        if scan["status"] == "failed":
            continue  # its file could not be read when scanned
        try:
            view = _thumbnail(scan)
        except SlideError as exc:
            panel.caption = f"{scan['scanner']}: cannot read ({exc})"
            continue
        # an unregistered scan is still shown, so a person sees why (blank, another slide)
        panel.rgb, panel.mask = view.rgb, view.mask
        if matrix is None:
            continue
        to_thumb = geo.compose(geo.invert(view.to_level0), matrix)
        for index, corners in corners0.items():
            worst = _worse(region_status[index], status.get((index, scan["scanner"]), "ok"))
            panel.boxes.append(Box(index, worst, geo.apply(to_thumb, corners)))
    return panels


def _rows(table: pd.DataFrame | None, slide_id: str) -> pd.DataFrame:
    if table is None:
        columns = ["slide_id", "scanner", "region_index", "x_um", "y_um", "region_um", "status"]
        return pd.DataFrame(columns=columns)
    return table[table["slide_id"] == slide_id]


def _patch_status(patches: pd.DataFrame | None, slide_id: str) -> dict[tuple[int, str], str]:
    rows = _rows(patches, slide_id)
    if rows.empty:
        return {}
    keys = zip(rows["region_index"].astype(int), rows["scanner"], strict=True)
    return dict(zip(keys, rows["status"], strict=True))


def _worse(a: str, b: str) -> str:
    return a if _SEVERITY.get(a, 0) >= _SEVERITY.get(b, 0) else b


def _matrix(scan: pd.Series, regs: pd.DataFrame, is_ref: bool) -> tuple[Any, str]:
    """(reference level-0 -> this scan's level-0 affine or None, panel caption)."""
    name = scan["scanner"]
    if scan["status"] == "failed":
        return None, f"{name}: scan failed, nothing to show"
    if is_ref:
        return geo.identity(), f"{name} (reference): tissue outlined, regions numbered"
    if name not in regs.index or regs.loc[name, "status"] == "failed":
        return None, f"{name}: not registered, so no regions drawn"
    row = regs.loc[name]
    how = describe_orientation(row.get("orientation"))
    status = "" if row["status"] == "ok" else f" ({row['status']})"
    return geo.from_six(row["matrix"]), f"{name}: via its registration{status}" + (
        f", {how}" if how else ""
    )


def _thumbnail(scan: pd.Series) -> View:
    mpp = (float(scan["mpp_x"]), float(scan["mpp_y"]))
    with Slide(scan["path"], mpp=mpp) as slide:
        view_mpp = max(slide.size_um()) / MAP_LONG_SIDE_PX
        return read_view(slide, view_mpp)


def draw_slide_map(slide_id: str, panels: list[Panel], path: Path) -> Path:
    """Draw ``panels`` in a grid with a status legend; write the PNG at ``path``."""
    rows = -(-len(panels) // COLUMNS)
    cols = min(COLUMNS, len(panels))
    fig = Figure(figsize=(PANEL_IN * cols, PANEL_IN * 0.85 * rows + 1.1), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        _draw_panel(ax, panel)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    counts = pd.Series([b.status for b in panels[0].boxes]).value_counts() if panels else {}
    handles = [
        Line2D([], [], color=mpl(rgb), lw=3, label=f"{s} ({int(counts.get(s, 0))})")
        for s, rgb in STATUS_RGB.items()
    ]
    handles.append(Line2D([], [], color=mpl(TISSUE_OUTLINE_RGB), lw=2, label="tissue outline"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"slide {slide_id}: regions on every scan (dot: region's top-left corner)")
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.8 / fig.get_figheight(), wspace=0.04)
    fig.subplots_adjust(bottom=0.45 / fig.get_figheight(), hspace=0.18)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _draw_panel(ax: Axes, panel: Panel) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(panel.caption, fontsize=9, wrap=True)
    if panel.rgb is None:
        ax.imshow(np.full((3, 4, 3), 235, np.uint8))
        return
    h, w = panel.rgb.shape[:2]
    # extent puts pixel (i, j) over [j, j+1) x [i, i+1), our convention (contracts section 1)
    ax.imshow(panel.rgb, extent=(0, w, h, 0), interpolation="antialiased")
    if panel.reference and panel.mask is not None and panel.mask.any():
        ax.contour(
            np.arange(w) + 0.5,
            np.arange(h) + 0.5,
            panel.mask.astype(np.uint8),
            levels=[0.5],
            colors=[mpl(TISSUE_OUTLINE_RGB)],
            linewidths=1.2,
        )
    halo = [patheffects.withStroke(linewidth=4, foreground=mpl(WHITE))]
    for box in panel.boxes:
        colour = mpl(STATUS_RGB.get(box.status, STATUS_RGB["failed"]))
        ax.add_patch(
            Polygon(box.corners, closed=True, fill=False, ec=colour, lw=2, path_effects=halo)
        )
        ax.plot(*box.corners[0], "o", ms=4, color=colour, path_effects=halo)
        cx, cy = box.corners.mean(axis=0)
        ax.text(
            cx,
            cy,
            str(box.index),
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            color=colour,
            path_effects=halo,
        )
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def write_slide_maps(build: str | Path, tables: dict[str, pd.DataFrame | None]) -> list[dict]:
    """One slide map per slide with regions in ``BUILD/qc/slides/``.

    Returns
    -------
    list of dict
        Per slide: ``slide_id``, ``path`` (the PNG, or None), ``regions`` (count),
        ``counts`` (regions per status), ``scans`` (panels drawn) and ``note`` (why there is
        no picture, or which scans could not be drawn).
    """
    bd = BuildDir.at(build)
    out = bd.qc / "slides"
    slides, regions = tables.get("slides"), tables.get("regions")
    if slides is None or regions is None or regions.empty:
        return []
    maps = []
    for slide_id in sorted(regions["slide_id"].unique()):
        entry = {"slide_id": slide_id, "path": None, "regions": 0, "scans": 0, "note": ""}
        entry["counts"] = {}
        maps.append(entry)
        try:
            panels = slide_panels(slide_id, tables)
        except Exception as exc:  # a picture must never stop the command that draws it
            entry["note"] = f"cannot draw the map ({exc.__class__.__name__}: {exc})"
            log.warning("slide map of %s not drawn: %s", slide_id, entry["note"], exc_info=True)
            continue
        if not panels or panels[0].rgb is None:
            entry["note"] = panels[0].caption if panels else "no reference scan in the manifest"
            log.warning("slide map of %s not drawn: %s", slide_id, entry["note"])
            continue
        entry["regions"] = len(panels[0].boxes)
        entry["scans"] = sum(p.rgb is not None for p in panels)
        statuses = [b.status for b in panels[0].boxes]
        entry["counts"] = {s: statuses.count(s) for s in STATUS_RGB}
        entry["path"] = draw_slide_map(slide_id, panels, out / f"{slide_id}.png")
        # the scans shown without the regions, and why (their panel captions say it too)
        unplaced = [p for p in panels[1:] if p.rgb is None or (entry["regions"] and not p.boxes)]
        entry["note"] = "; ".join(p.caption for p in unplaced)
    return maps
