"""Stream a pyramid level by level with memory bounded by one strip, whatever the slide size.

A level arrives as horizontal strips (top to bottom). Each strip is cut into TIFF tiles for
the writer and, on the way, area-averaged by an integer factor into the next level, which is
spooled to an unlinked temporary file (raw RGB) and read back strip by strip when its page is
written. Only one strip per level is ever in memory: a 20 x 15 mm slide at 0.25 um/px
(80,000 x 60,000 px) needs ~60 MB per strip instead of 14 GB for the level.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import tifffile


def strips_from_tile_rows(tile_rows: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """(n_x, t, t, 3) rows of tiles (as rendered) -> (t, n_x * t, 3) strips."""
    for tiles in tile_rows:
        n_x, th, tw = tiles.shape[:3]
        yield tiles.transpose(1, 0, 2, 3).reshape(th, n_x * tw, tiles.shape[3])


def tiles_of_strip(strip: np.ndarray, tile_px: int) -> Iterator[np.ndarray]:
    """Tiles of one strip, left to right; the last one may be narrower (the writer pads it)."""
    for x0 in range(0, strip.shape[1], tile_px):
        yield strip[:, x0 : x0 + tile_px]


def shrink(strip: np.ndarray, factor: int) -> np.ndarray:
    """Exact block means of ``factor x factor`` pixels (size divisible by ``factor``)."""
    if factor == 1:
        return strip
    h, w = strip.shape[:2]
    return cv2.resize(strip, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


class LevelSpool:
    """One pyramid level written as strips to a temporary file, read back as strips.

    Parameters
    ----------
    width, height : size of the level in px.
    directory : where the temporary file lives (next to the output keeps it on one disk).
    """

    def __init__(self, width: int, height: int, directory: str | Path | None = None) -> None:
        self.width, self.height = int(width), int(height)
        # unlinked at once: nothing is left behind even if the process is killed
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self._rows = 0

    def add(self, strip: np.ndarray) -> None:
        if strip.shape[1:] != (self.width, 3):
            raise ValueError(f"strip of shape {strip.shape} for a level {self.width} px wide")
        self._file.write(np.ascontiguousarray(strip, np.uint8).tobytes())
        self._rows += strip.shape[0]

    def strips(self, rows: int) -> Iterator[np.ndarray]:
        """The level as strips of ``rows`` rows (the last may be shorter)."""
        if self._rows != self.height:
            raise ValueError(f"level has {self._rows} rows written, expected {self.height}")
        self._file.seek(0)
        row_bytes = self.width * 3
        for y0 in range(0, self.height, rows):
            n = min(rows, self.height - y0)
            data = self._file.read(n * row_bytes)
            yield np.frombuffer(data, np.uint8).reshape(n, self.width, 3)

    def close(self) -> None:
        self._file.close()


def feed(
    strips: Iterable[np.ndarray], spool: LevelSpool | None, factor: int
) -> Iterator[np.ndarray]:
    """Pass strips through unchanged, spooling each one shrunk by ``factor`` on the way."""
    for strip in strips:
        if spool is not None:
            spool.add(shrink(strip, factor))
        yield strip


def thumbnail(strips: Iterable[np.ndarray], size: tuple[int, int], height: int) -> np.ndarray:
    """A level of ``height`` rows shrunk to ``size = (w, h)`` strip by strip (memory: output)."""
    w_out, h_out = size
    # each strip shrinks to at least one row; the final resize evens out the rounding
    parts = [
        cv2.resize(
            s,
            (w_out, max(1, round(s.shape[0] * h_out / height))),
            interpolation=cv2.INTER_AREA,
        )
        for s in strips
    ]
    return cv2.resize(np.concatenate(parts, axis=0), size, interpolation=cv2.INTER_AREA)


# keep(level, tile_row, tile_col) -> False: a tile the scanner did not scan (see write_levels)
TileFilter = Callable[[int, int, int], bool]


def write_levels(
    tif: tifffile.TiffWriter,
    strips: Iterable[np.ndarray],
    sizes: list[tuple[int, int]],
    tile_px: int,
    page_options: Callable[[int], dict],
    *,
    after_level0: Callable[[LevelSpool | None], None] | None = None,
    keep: TileFilter | None = None,
    page_sizes: list[tuple[int, int]] | None = None,
) -> list[list[int]]:
    """Write each level of ``sizes`` as one tiled page, from level-0 ``strips`` of ``tile_px`` rows.

    Parameters
    ----------
    sizes : (width, height) of each level in px; each divides the previous exactly.
    page_options : keyword arguments of ``tif.write`` for level k (description, subfiletype...).
    after_level0 : called with the level-1 spool once level 0 is written (e.g. a thumbnail page).
    keep : which tiles exist. The others are written white and returned, to be marked
        missing (TileByteCounts 0) by :func:`mark_missing` once the file is closed: tifffile
        cannot start a page with an empty tile.
    page_sizes : stored page size per level when larger than the level (padded to whole
        tiles, as Philips writes them); the padding is white.
    """
    page_sizes = page_sizes or sizes
    directory = Path(tif.filehandle.path).parent if tif.filehandle.path else None
    missing: list[list[int]] = []
    for k, level_strips, next_level in iter_levels(strips, sizes, tile_px, directory):
        (w, h), (page_w, page_h) = sizes[k], page_sizes[k]
        missing.append([])
        tiles = _page_tiles(level_strips, (w, h), (page_w, page_h), tile_px, k, keep, missing[-1])
        tif.write(
            tiles, shape=(page_h, page_w, 3), dtype=np.uint8, tile=(tile_px, tile_px),
            **page_options(k),
        )  # fmt: skip
        if k == 0 and after_level0 is not None:
            after_level0(next_level)
    return missing


def iter_levels(
    strips: Iterable[np.ndarray],
    sizes: list[tuple[int, int]],
    rows: int,
    directory: str | Path | None = None,
) -> Iterator[tuple[int, Iterator[np.ndarray], LevelSpool | None]]:
    """For each level k of ``sizes``: (k, its strips, the spool of level k + 1).

    Level 0's strips are ``strips``; level k + 1's are read back, ``rows`` at a time, from
    the spool filled while level k's strips were consumed, so consume each level's strips
    fully before asking for the next level.
    """
    source: Iterable[np.ndarray] = strips
    open_spools: list[LevelSpool] = []
    try:
        for k, (w, _) in enumerate(sizes):
            nxt = LevelSpool(*sizes[k + 1], directory) if k + 1 < len(sizes) else None
            if nxt is not None:
                open_spools.append(nxt)
            yield k, feed(source, nxt, w // sizes[k + 1][0] if nxt is not None else 1), nxt
            if len(open_spools) > 1:  # level k's own spool is read: done with it
                open_spools.pop(0).close()
            source = nxt.strips(rows) if nxt is not None else iter(())
    finally:
        for spool in open_spools:
            spool.close()


def mark_missing(path: str | Path, pages: list[int], missing: list[list[int]]) -> None:
    """Set TileByteCounts to 0 for the ``missing`` tile indices of each page in ``pages``."""
    if not any(missing):
        return
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for index, tiles in zip(pages, missing, strict=True):
            if tiles:
                tag = tif.pages[index].tags["TileByteCounts"]
                counts = np.array(tag.value, dtype=np.int64)
                counts[tiles] = 0
                tag.overwrite(counts.tolist())


def _page_tiles(
    strips: Iterable[np.ndarray],
    size: tuple[int, int],
    page_size: tuple[int, int],
    tile_px: int,
    level: int,
    keep: TileFilter | None,
    missing: list[int],
) -> Iterator[np.ndarray]:
    (w, h), (page_w, page_h) = size, page_size
    rows, n_x = 0, -(-page_w // tile_px)
    white = np.full((tile_px, tile_px, 3), 255, np.uint8)
    for ty, strip in enumerate(strips):
        if strip.shape[1] != w:
            raise ValueError(f"strip {strip.shape} for a level {w} px wide")
        rows += strip.shape[0]
        if page_w > w:
            strip = np.pad(strip, ((0, 0), (0, page_w - w), (0, 0)), constant_values=255)
        for tx, tile in enumerate(tiles_of_strip(strip, tile_px)):
            if keep is None or keep(level, ty, tx):
                yield tile
            else:
                missing.append(ty * n_x + tx)
                yield white[: tile.shape[0], : tile.shape[1]]
    if rows != h:
        raise ValueError(f"level {level}: strips covered {rows} rows, expected {h}")
    for _ in range(-(-page_h // tile_px) - -(-h // tile_px)):
        yield from (white for _ in range(n_x))
