"""Direct tile decoding for tiled TIFF pyramids whose tiles do not overlap.

openslide and tiffslide stay the source of truth for levels and metadata; for reading pixels
of a level that is a plain tiled TIFF page, decoding just the needed tiles with tifffile and
imagecodecs (libjpeg-turbo) avoids the ARGB round trip and costs ~4x less per region.

Which files qualify is decided by vendor (:data:`DIRECT_VENDORS`), never by page sizes
alone: a Ventana BIF stores level 0 as overlapping camera images in a page of plausible
size, and only OpenSlide knows where each one goes. Level k is the k-th tiled page by
decreasing width, as those backends order them; a page may exceed its level by tile padding
(Philips), anything else leaves the level to the library. Missing tiles (TileByteCounts 0,
sparse Philips levels) read white, as OpenSlide's transparent pixels do through ``Slide``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# TIFF compressions decoded here: none, LZW, JPEG, deflate. JPEG 2000 (Aperio 33003/33005)
# is left to openslide, whose colour handling of it differs from a plain decode.
SUPPORTED_COMPRESSION = {1, 5, 7, 8, 32946}
# openslide.vendor values whose levels are plain, non-overlapping tile grids; "tiffslide"
# stands for any file tiffslide reads (it treats every level as a plain tile grid itself)
DIRECT_VENDORS = frozenset({"aperio", "generic-tiff", "philips", "tiffslide"})


class TileReader:
    """Decode regions of the tiled TIFF pages that hold a slide's levels."""

    def __init__(self, path: str | Path, level_dimensions: tuple[tuple[int, int], ...]) -> None:
        import tifffile

        self._tif = tifffile.TiffFile(str(path))
        self._fh = self._tif.filehandle
        self.pages: dict[int, object] = {}
        self.skipped: list[str] = []  # why a level is left to the library
        tiled = sorted((p for p in self._tif.pages if p.is_tiled), key=lambda p: -p.imagewidth)
        for level, (w, h) in enumerate(level_dimensions):
            page = tiled[level] if level < len(tiled) else None
            if page is None or not _holds(page, w, h):
                self.skipped.append(f"level {level}: no tiled page of {w}x{h} px")
            elif not _usable(page):
                self.skipped.append(f"level {level}: compression or layout not decoded here")
            else:
                self.pages[level] = page

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray | None:
        """RGB uint8 (h, w, 3) of an in-bounds box, or None if this level is not served."""
        page = self.pages.get(level)
        if page is None:
            return None
        tw, th = page.tilewidth, page.tilelength
        across = -(-page.imagewidth // tw)
        out = np.empty((h, w, 3), np.uint8)
        for ty in range(y // th, (y + h - 1) // th + 1):
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                index = ty * across + tx
                x0, y0 = tx * tw, ty * th
                sx0, sy0 = max(x, x0), max(y, y0)
                sx1, sy1 = min(x + w, x0 + tw), min(y + h, y0 + th)
                if page.databytecounts[index] == 0:  # a tile the scanner skipped
                    out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = 255
                    continue
                self._fh.seek(page.dataoffsets[index])
                data = self._fh.read(page.databytecounts[index])
                tile = page.decode(data, index, jpegtables=page.jpegtables)[0]
                if tile is None:
                    return None
                tile = tile.reshape(th, tw, -1)[..., :3]
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0
                ]
        return out

    def close(self) -> None:
        self._tif.close()


def _usable(page) -> bool:  # noqa: ANN001 - tifffile.TiffPage
    try:
        return (
            page.is_tiled
            and page.compression in SUPPORTED_COMPRESSION
            and page.dtype == np.uint8
            and page.samplesperpixel in (3, 4)
            and page.planarconfig == 1
            and page.photometric in (2, 6)  # RGB, YCbCr (JPEG-coded)
            and page.imagedepth == 1
        )
    except Exception:  # odd tags: leave it to openslide
        return False


def _holds(page, width: int, height: int) -> bool:  # noqa: ANN001
    """The page is the level, or the level plus padding to whole tiles (Philips)."""
    try:
        extra_w, extra_h = page.imagewidth - width, page.imagelength - height
        return 0 <= extra_w < page.tilewidth and 0 <= extra_h < page.tilelength
    except Exception:
        return False


def open_tile_reader(
    path: str | Path,
    level_dimensions,
    vendor: str,  # noqa: ANN001
) -> TileReader | None:
    """A reader for the levels it can serve, or None; says once (INFO) why not, if not."""
    if vendor not in DIRECT_VENDORS:
        log.info("%s: %s file, OpenSlide/tiffslide read every level", path, vendor)
        return None
    try:
        reader = TileReader(path, level_dimensions)
    except Exception as exc:  # not a TIFF (DICOM, MRXS, ...): the library reads it
        log.info("%s: no direct tile reading (%s); the library reads it", path, exc)
        return None
    if reader.skipped:
        log.info("%s: left to the library: %s", path, "; ".join(reader.skipped))
    if not reader.pages:
        reader.close()
        return None
    return reader
