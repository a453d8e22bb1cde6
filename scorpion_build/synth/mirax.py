"""3DHISTECH MIRAX (P1000): ``NAME.mrxs`` plus the folder ``NAME/`` with ``Slidedat.ini``,
``Index.dat`` and ``Data0000.dat``, as OpenSlide's ``openslide-vendor-mirax.c`` reads them.

- Camera images (``DIGITIZER_WIDTH x DIGITIZER_HEIGHT`` JPEGs) overlap their neighbours by
  ``OVERLAP_X/Y`` px; a ``VIMSLIDE_POSITION_BUFFER`` record gives each camera position
  (9 bytes: flag, x, y little-endian int32, level-0 px). Camera fields without tissue are
  not scanned: no image, position (0, 0), so OpenSlide reports ``openslide.bounds-*``.
- Zoom level k (``IMAGE_CONCAT_FACTOR`` 1 per level after the first) stores, per JPEG,
  ``2**k x 2**k`` camera images each shrunk by ``2**k``, indexed by the top-left camera.
- ``Index.dat``: ``"01.02"`` + SLIDE_ID, then the hierarchical and non-hierarchical roots;
  each zoom level points to a page of (image index, offset, length, file number) records.

The level-k JPEGs are the same blocks as the Ventana writer's level-k tiles (camera images
juxtaposed, then shrunk), so both containers come from one level stream.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from pathlib import Path

import imagecodecs
import numpy as np

from scorpion_build.synth.native import CameraGrid, camera_strips
from scorpion_build.synth.pyramid import iter_levels, tiles_of_strip

_VERSION = b"01.02"
_MAX_DATA_FILE_BYTES = 1 << 30  # offsets are int32: start a new data file well before 2 GiB


def write_mirax(
    path: str | Path,
    tile_rows: Iterable[np.ndarray],
    layout: CameraGrid,
    *,
    mpp: float,
    scanned: np.ndarray | None = None,
    render_tile_px: int = 256,
    jpeg_quality: int = 85,
) -> int:
    """Write ``path`` (``.mrxs``) and its data folder; return the number of zoom levels.

    ``tile_rows`` renders the scene as for :func:`scorpion_build.synth.native.write_bif`;
    ``scanned`` (rows, cols) bool marks the camera fields the scanner took (default: all).
    """
    path = Path(path)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    t, cols, rows = layout.tile_px, layout.cols, layout.rows
    scanned = np.ones((rows, cols), bool) if scanned is None else np.asarray(scanned, bool)
    scanned[0, 0] = True  # OpenSlide reads position (0, 0) as "not scanned" elsewhere only
    n_levels = layout.levels
    pages = [(cols * t >> k, rows * t >> k) for k in range(n_levels)]
    data = _DataFiles(folder)
    records: list[list[tuple[int, int, int, int]]] = []
    strips = camera_strips(layout, tile_rows, render_tile_px)
    for k, level_strips, _ in iter_levels(strips, pages, t, folder):
        f, level_records = 2**k, []
        for ty, strip in enumerate(level_strips):
            for tx, block in enumerate(tiles_of_strip(strip, t)):
                y0, x0 = ty * f, tx * f
                if not scanned[y0 : y0 + f, x0 : x0 + f].any():
                    continue
                if block.shape[:2] != (t, t):  # a partial block at the right or bottom edge
                    block = np.pad(
                        block,
                        ((0, t - block.shape[0]), (0, t - block.shape[1]), (0, 0)),
                        constant_values=255,
                    )
                jpeg = imagecodecs.jpeg8_encode(np.ascontiguousarray(block), level=jpeg_quality)
                level_records.append((y0 * cols + x0, *data.append(jpeg)))
        records.append(level_records)
    positions = _position_buffer(layout, scanned)
    position_record = data.append(positions)
    data.close()
    slide_id = _slide_id(path)
    (folder / "Index.dat").write_bytes(_index(slide_id, records, position_record))
    (folder / "Slidedat.ini").write_text(
        _slidedat(slide_id, layout, mpp, n_levels, data.names), encoding="utf-8"
    )
    path.write_bytes(b"")  # the .mrxs itself only has to exist beside its folder
    return n_levels


def _slide_id(path: Path) -> str:
    # deterministic (same seed, same bytes), unique enough within one build
    return uuid.uuid5(uuid.NAMESPACE_URL, path.name).hex


class _DataFiles:
    """Append-only Data%04d.dat files; ``append`` returns (offset, length, file number)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self.names: list[str] = []
        self._fh = None
        self._open_next()

    def _open_next(self) -> None:
        if self._fh is not None:
            self._fh.close()
        name = f"Data{len(self.names):04d}.dat"
        self.names.append(name)
        self._fh = open(self._folder / name, "wb")  # noqa: SIM115 - closed by close()

    def append(self, payload: bytes) -> tuple[int, int, int]:
        if self._fh.tell() + len(payload) > _MAX_DATA_FILE_BYTES:
            self._open_next()
        offset = self._fh.tell()
        self._fh.write(payload)
        return offset, len(payload), len(self.names) - 1

    def close(self) -> None:
        self._fh.close()


def _position_buffer(layout: CameraGrid, scanned: np.ndarray) -> bytes:
    out = bytearray()
    for r in range(layout.rows):
        for c in range(layout.cols):
            if scanned[r, c]:
                x, y = c * layout.advance_px, r * layout.advance_px
                out += struct.pack("<bii", 1, x, y)
            else:
                out += struct.pack("<bii", 0, 0, 0)
    return bytes(out)


def _index(
    slide_id: str,
    records: list[list[tuple[int, int, int, int]]],
    position: tuple[int, int, int],
) -> bytes:
    """Index.dat: header, two roots, then the pointer tables and record pages."""
    head = _VERSION + slide_id.encode()
    body = bytearray()
    base = len(head) + 8  # after the hierarchical and non-hierarchical root pointers

    def here() -> int:
        return base + len(body)

    def i32(*values: int) -> bytes:
        return struct.pack(f"<{len(values)}i", *values)

    # zoom-level pages: [count, next = 0, records...], each behind a [0, page pointer] list head
    heads = []
    for level_records in records:
        page = here()
        body.extend(i32(len(level_records), 0))
        for rec in level_records:
            body.extend(i32(*rec))
        heads.append(here())
        body.extend(i32(0, page))
    hier_table = here()
    body.extend(i32(*heads))
    # the one non-hierarchical record: the camera position buffer
    page = here()
    offset, length, fileno = position
    body.extend(i32(1, 0, 0, 0, offset, length, fileno))
    nonhier_head = here()
    body.extend(i32(0, page))
    nonhier_table = here()
    body.extend(i32(nonhier_head))
    return head + i32(hier_table, nonhier_table) + bytes(body)


def _slidedat(
    slide_id: str, layout: CameraGrid, mpp: float, n_levels: int, data_files: list[str]
) -> str:
    ov = layout.tile_px - layout.advance_px
    lines = [
        "[GENERAL]",
        f"SLIDE_ID={slide_id}",
        f"IMAGENUMBER_X={layout.cols}",
        f"IMAGENUMBER_Y={layout.rows}",
        f"OBJECTIVE_MAGNIFICATION={20 if mpp >= 0.375 else 40}",
        "CameraImageDivisionsPerSide=1",
        "SLIDE_TYPE=Brightfield",
        "",
        "[HIERARCHICAL]",
        "HIER_COUNT=1",
        "HIER_0_NAME=Slide zoom level",
        f"HIER_0_COUNT={n_levels}",
    ]
    for k in range(n_levels):
        lines += [f"HIER_0_VAL_{k}=ZoomLevel_{k}", f"HIER_0_VAL_{k}_SECTION=LAYER_0_LEVEL_{k}"]
    lines += [
        "NONHIER_COUNT=1",
        "NONHIER_0_NAME=VIMSLIDE_POSITION_BUFFER",
        "NONHIER_0_COUNT=1",
        "NONHIER_0_VAL_0=default",
        "NONHIER_0_VAL_0_SECTION=NONHIER_0_VAL_0",
        "INDEXFILE=Index.dat",
        "",
        "[DATAFILE]",
        f"FILE_COUNT={len(data_files)}",
        *(f"FILE_{i}={name}" for i, name in enumerate(data_files)),
        "",
    ]
    for k in range(n_levels):
        lines += [
            f"[LAYER_0_LEVEL_{k}]",
            f"OVERLAP_X={ov / 2**k:g}",
            f"OVERLAP_Y={ov / 2**k:g}",
            f"MICROMETER_PER_PIXEL_X={mpp * 2**k:.6f}",
            f"MICROMETER_PER_PIXEL_Y={mpp * 2**k:.6f}",
            "IMAGE_FORMAT=JPEG",
            "IMAGE_FILL_COLOR_BGR=16777215",
            f"DIGITIZER_WIDTH={layout.tile_px}",
            f"DIGITIZER_HEIGHT={layout.tile_px}",
            f"IMAGE_CONCAT_FACTOR={0 if k == 0 else 1}",
            "",
        ]
    lines += ["[NONHIER_0_VAL_0]", "", ""]
    return "\n".join(lines)
