"""The scanners' own containers: Ventana BIF (DP200) and Philips TIFF, as OpenSlide reads them.

Each layout follows what OpenSlide's backend requires (``openslide-vendor-ventana.c``,
``openslide-vendor-philips-tiff.c``):

- Ventana BIF: page 0 carries an XMP packet (TIFF tag 700) whose root is ``<iScan>`` with
  ``Magnification`` and ``ScanRes`` (um/px). Level pages are described ``level=k mag=M
  quality=Q``. Level 0 has its own XMP, ``<EncodeInfo>``, listing the area of interest and
  the joints between camera tiles; each TIFF tile is one camera image, and neighbouring
  camera images overlap by ``overlap_px``, so the stored page is larger than the slide and
  OpenSlide places tile ``(col, row)`` at ``(col, row) * (tile - overlap)``. Camera tiles are
  numbered from the bottom-left, serpentine. Reduced levels hold the camera images shrunk,
  ``2**k x 2**k`` of them per TIFF tile.
- Philips TIFF: Software starts with ``Philips``; page 0's ImageDescription is the
  ``DPUfsImport`` XML with one ``WSI`` image and a ``DICOM_PIXEL_SPACING`` (mm) per level.
  Reduced pages are padded to whole tiles (OpenSlide clips them to level 0 / downsample),
  and tiles outside the scanned tissue are absent (TileByteCounts 0): a sparse level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from scorpion_build.synth.pyramid import LevelSpool, mark_missing, thumbnail, write_levels
from scorpion_build.synth.writers import checked_strips, level_sizes, needs_bigtiff, page_common

_XMP = 700  # TIFF tag XMLPacket
_VENTANA_SOFTWARE = "ScanOutputManager 1.1.0.15854 (scorpion-build synth)"
_PHILIPS_SOFTWARE = "Philips DP v1.0 (scorpion-build synth)"


@dataclass(frozen=True)
class CameraGrid:
    """Camera images of a BIF or MIRAX level 0: ``cols x rows`` of ``tile_px``, ``advance_px``
    apart.

    ``width x height`` is the level-0 size OpenSlide reports: ``(cols - 1) * advance + tile``.
    """

    tile_px: int
    advance_px: int
    cols: int
    rows: int

    @property
    def width(self) -> int:
        return (self.cols - 1) * self.advance_px + self.tile_px

    @property
    def height(self) -> int:
        return (self.rows - 1) * self.advance_px + self.tile_px

    @property
    def levels(self) -> int:
        """Levels of downsample 2**k down to about 1024 px, as scanners write them.

        Each level-k tile holds ``2**k x 2**k`` shrunk camera images, so ``2**k`` divides the
        tile. Past ``advance_px``'s power of two the shrunk images sit at fractional
        positions, which OpenSlide places as real files need it to: only coarse levels
        (thumbnails), whose reading then stays small at any slide size.
        """
        k = 0
        while self.tile_px % 2 ** (k + 1) == 0 and max(self.width, self.height) >> k > 1024:
            k += 1
        return k + 1


def camera_grid(width: int, height: int, overlap_px: int = 16) -> CameraGrid:
    """Smallest camera grid covering ``width x height`` px (at least 2 x 2 camera tiles).

    Camera images are 512 px (a camera row stays ~130 MB at 80,000 px wide); slides under
    1024 px get 256 px ones so that they still have joints in both directions (OpenSlide
    averages the joints' overlaps, and divides by their count).
    """
    tile = 512 if min(width, height) >= 2 * 512 else 256
    advance = tile - overlap_px
    cols = max(2, -(-(width - tile) // advance) + 1)
    rows = max(2, -(-(height - tile) // advance) + 1)
    return CameraGrid(tile, advance, cols, rows)


def write_bif(
    path: str | Path,
    tile_rows: Iterable[np.ndarray],
    layout: CameraGrid,
    *,
    mpp: float,
    render_tile_px: int = 256,
    compression: str = "jpeg",
    jpeg_quality: int = 85,
) -> list[tuple[int, int]]:
    """Write a Ventana BIF whose stitched level 0 (as OpenSlide places the camera tiles) is
    the rendered scene; return the stored page sizes.

    ``tile_rows`` renders the scene at least ``layout.width x layout.height`` px, in rows of
    ``render_tile_px`` (its size rounded up to whole render tiles).
    """
    t = layout.tile_px
    pages = [(layout.cols * t >> k, layout.rows * t >> k) for k in range(layout.levels)]
    mag = 40 if mpp < 0.375 else 20
    common = page_common(compression, jpeg_quality, _VENTANA_SOFTWARE)
    iscan = _iscan_xml(mpp, mag).encode()

    def options(k: int) -> dict:
        extra = [(_XMP, 1, 0, _encode_info(layout).encode(), True)] if k == 0 else []
        desc = f"level={k} mag={mag / 2**k:g} quality={jpeg_quality}"
        return dict(description=desc, extratags=_counted(extra), **common)

    def thumbnail_page(level1: LevelSpool | None) -> None:
        if level1 is not None:
            size = _fit(pages[1], 1024)
            tif.write(
                thumbnail(level1.strips(t), size, pages[1][1]), description="Thumbnail", **common
            )

    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(*pages[0])) as tif:
        tif.write(
            _label(),
            description="Label_Image",
            extratags=_counted([(_XMP, 1, 0, iscan, True)]),
            **common,
        )
        strips = camera_strips(layout, tile_rows, render_tile_px)
        write_levels(tif, strips, pages, t, options, after_level0=thumbnail_page)
    return pages


def camera_strips(
    layout: CameraGrid, tile_rows: Iterable[np.ndarray], render_tile_px: int
) -> Iterator[np.ndarray]:
    """Camera rows (tile_px x cols * tile_px) cut from a scene rendered in rows of
    ``render_tile_px``, its size the layout's rounded up to whole render tiles."""
    w = -(-layout.width // render_tile_px) * render_tile_px
    h = -(-layout.height // render_tile_px) * render_tile_px
    return _camera_strips(checked_strips(tile_rows, w, h, render_tile_px), layout)


def _camera_strips(scene: Iterator[np.ndarray], layout: CameraGrid) -> Iterator[np.ndarray]:
    """Level-0 page strips: camera row r holds scene rows [r * advance, r * advance + tile),
    each camera image the scene's [c * advance, c * advance + tile) columns.

    Holds only the scene strips that camera row r still needs (memory: ~tile + one strip).
    """
    t, a = layout.tile_px, layout.advance_px
    held: list[tuple[int, np.ndarray]] = []  # (first scene row, strip)
    end = 0  # scene rows [0, end) have been rendered
    for r in range(layout.rows):
        y0 = r * a
        while end < y0 + t:
            strip = next(scene)
            held.append((end, strip))
            end += strip.shape[0]
        held = [(top, s) for top, s in held if top + s.shape[0] > y0]
        camera_row = np.empty((t, layout.cols * t, 3), np.uint8)
        for top, s in held:
            i0, i1 = max(y0, top), min(y0 + t, top + s.shape[0])
            if i0 >= i1:
                continue
            src, dst = slice(i0 - top, i1 - top), slice(i0 - y0, i1 - y0)
            for c in range(layout.cols):
                camera_row[dst, c * t : (c + 1) * t] = s[src, c * a : c * a + t]
        yield camera_row
    for _ in scene:  # let the render stream finish its checks
        pass


def _tile_number(layout: CameraGrid, col: int, row: int) -> int:
    """1-based camera tile number: rows counted from the bottom, odd rows right to left."""
    from_bottom = layout.rows - 1 - row
    c = col if from_bottom % 2 == 0 else layout.cols - 1 - col
    return from_bottom * layout.cols + c + 1


def _encode_info(layout: CameraGrid) -> str:
    ov = layout.tile_px - layout.advance_px
    joints = []
    for row in range(layout.rows):
        for col in range(layout.cols):
            here = _tile_number(layout, col, row)
            if col + 1 < layout.cols:
                right = _tile_number(layout, col + 1, row)
                joints.append(_joint("RIGHT", here, right, ov, 0))
            if row > 0:  # UP joins this tile to the one above it
                joints.append(_joint("UP", here, _tile_number(layout, col, row - 1), 0, ov))
    t = layout.tile_px
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<EncodeInfo Ver="2">\n'
        '<AoiOrigin><AOI0 OriginX="0" OriginY="0"/></AoiOrigin>\n<SlideStitchInfo>\n'
        f'<ImageInfo AOIScanned="1" AOIIndex="0" Width="{t}" Height="{t}" '
        f'NumRows="{layout.rows}" NumCols="{layout.cols}" Pos-X="0" Pos-Y="0">\n'
        + "\n".join(joints)
        + "\n</ImageInfo>\n</SlideStitchInfo>\n</EncodeInfo>\n"
    )


def _joint(direction: str, tile1: int, tile2: int, ox: int, oy: int) -> str:
    return (
        f'<TileJointInfo FlagJoined="1" Direction="{direction}" Tile1="{tile1}" '
        f'Tile2="{tile2}" OverlapX="{ox}" OverlapY="{oy}" Confidence="100"/>'
    )


def _iscan_xml(mpp: float, mag: int) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<iScan Magnification="{mag}" ScanRes="{mpp:.6f}" ScannerModel="VENTANA DP 200" '
        'UnitNumber="SYNTH" BuildVersion="1.1.0.15854" Mode="Brightfield"/>\n'
    )


def write_philips(
    path: str | Path,
    tile_rows: Iterable[np.ndarray],
    width: int,
    height: int,
    *,
    mpp: float,
    keep: Callable[[int, int], bool] | None = None,
    tile_px: int = 256,
    compression: str = "jpeg",
    jpeg_quality: int = 85,
) -> list[tuple[int, int]]:
    """Write a Philips TIFF (level downsample 2); return the level sizes OpenSlide reports.

    ``keep(tile_row, tile_col)`` says which level-0 tiles were scanned; a reduced tile exists
    when any level-0 tile under it does.
    """
    sizes = level_sizes(width, height, 2)
    pages = [(-(-w // tile_px) * tile_px, -(-h // tile_px) * tile_px) for w, h in sizes]
    common = page_common(compression, jpeg_quality, _PHILIPS_SOFTWARE)
    xml = _philips_xml(mpp, sizes, pages)

    def options(k: int) -> dict:
        return dict(subfiletype=1 if k else 0, description=xml if k == 0 else None, **common)

    def exists(k: int, ty: int, tx: int) -> bool:
        if keep is None:
            return True
        f = 2**k
        n_y, n_x = height // tile_px, width // tile_px
        return any(
            keep(y, x)
            for y in range(ty * f, min((ty + 1) * f, n_y))
            for x in range(tx * f, min((tx + 1) * f, n_x))
        )

    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(width, height)) as tif:
        strips = checked_strips(tile_rows, width, height, tile_px)
        missing = write_levels(tif, strips, sizes, tile_px, options, keep=exists, page_sizes=pages)
    mark_missing(path, list(range(len(sizes))), missing)
    return sizes


def _philips_xml(mpp: float, sizes: list[tuple[int, int]], pages: list[tuple[int, int]]) -> str:
    def attr(name: str, value: str, vr: str = "IString") -> str:
        return f'<Attribute Name="{name}" PMSVR="{vr}">{value}</Attribute>'

    def spacing(k: int) -> str:  # row and column spacing in mm, quoted as Philips writes it
        mm = mpp * (sizes[0][0] / sizes[k][0]) / 1000.0
        return attr(
            "DICOM_PIXEL_SPACING", f"&quot;{mm:.9g}&quot; &quot;{mm:.9g}&quot;", "IDoubleArray"
        )

    levels = []
    for k, (w, h) in enumerate(pages):
        levels.append(
            '<DataObject ObjectType="PixelDataRepresentation">'
            + spacing(k)
            + attr("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", str(k), "IUInt16")
            + attr("PIIM_PIXEL_DATA_REPRESENTATION_COLUMNS", str(w), "IUInt32")
            + attr("PIIM_PIXEL_DATA_REPRESENTATION_ROWS", str(h), "IUInt32")
            + "</DataObject>"
        )
    wsi = (
        '<DataObject ObjectType="DPScannedImage">'
        + attr("PIM_DP_IMAGE_TYPE", "WSI")
        + spacing(0)
        + '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" PMSVR="IDataObjectArray">'
        + "<Array>"
        + "".join(levels)
        + "</Array></Attribute></DataObject>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<DataObject ObjectType="DPUfsImport">'
        + attr("DICOM_MANUFACTURER", "PHILIPS")
        + attr("DICOM_SOFTWARE_VERSIONS", "&quot;scorpion-build synth&quot;", "IStringArray")
        + '<Attribute Name="PIM_DP_SCANNED_IMAGES" PMSVR="IDataObjectArray"><Array>'
        + wsi
        + "</Array></Attribute></DataObject>\n"
    )


def _counted(tags: list[tuple]) -> list[tuple]:
    """Fill in the byte count of (code, type, 0, bytes, writeonce) tags."""
    return [(code, dtype, len(value), value, once) for code, dtype, _, value, once in tags]


def _fit(size: tuple[int, int], longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _label() -> np.ndarray:
    """A small slide label: white with a dark code block, as scanners photograph it."""
    label = np.full((256, 256, 3), 250, np.uint8)
    cv2.rectangle(label, (48, 48), (208, 208), (30, 30, 30), -1)
    return label


def tissue_tiles(
    labels: np.ndarray,
    labels_mpp: float,
    px_to_specimen: Callable[[np.ndarray], np.ndarray],
    size_px: tuple[int, int],
    scan_mpp: float,
    tile_px: int,
    margin_um: float = 100.0,
    pitch_px: int | None = None,
) -> np.ndarray:
    """(rows, cols) bool: level-0 tiles within ``margin_um`` of tissue, i.e. those a scanner
    that scans only the tissue's regions of interest (Philips) stores.

    ``labels`` is the specimen's tissue map (0 = glass) at ``labels_mpp`` um/px and
    ``px_to_specimen`` maps scan px (N, 2) to specimen um. Tiles start every ``pitch_px``
    (default ``tile_px``; less for overlapping camera images). All tiles are kept when no
    tile touches tissue (a blank slide still has a level to read).
    """
    step = max(1, int(10.0 / labels_mpp))  # a ~10 um grid is plenty for a tile decision
    h, w = labels.shape
    coarse = cv2.resize(
        (labels > 0).astype(np.uint8),
        (-(-w // step), -(-h // step)),
        interpolation=cv2.INTER_NEAREST,
    )
    pitch = pitch_px or tile_px
    n_x, n_y = (size_px[0] - tile_px) // pitch + 1, (size_px[1] - tile_px) // pitch + 1
    if not coarse.any():  # bare glass: no distances to measure
        return np.ones((n_y, n_x), bool)
    # distance (um) from each coarse cell to the nearest tissue cell
    dist_um = cv2.distanceTransform((coarse == 0).astype(np.uint8), cv2.DIST_L2, 5)
    dist_um = dist_um * step * labels_mpp
    ty, tx = np.mgrid[0:n_y, 0:n_x]
    centres = np.stack([tx.ravel() * pitch, ty.ravel() * pitch], axis=1) + tile_px / 2
    um = px_to_specimen(centres)
    j = np.clip((um[:, 0] / (labels_mpp * step)).astype(int), 0, coarse.shape[1] - 1)
    i = np.clip((um[:, 1] / (labels_mpp * step)).astype(int), 0, coarse.shape[0] - 1)
    inside = (um[:, 0] >= 0) & (um[:, 1] >= 0) & (um[:, 0] < w * labels_mpp)
    inside &= um[:, 1] < h * labels_mpp
    half_diag_um = tile_px * scan_mpp / np.sqrt(2)  # tissue anywhere in the tile keeps it
    near = inside & (dist_um[i, j] <= margin_um + half_diag_um)
    keep = near.reshape(n_y, n_x)
    return keep if keep.any() else np.ones_like(keep)
