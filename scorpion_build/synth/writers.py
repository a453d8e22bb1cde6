"""Pyramidal TIFF writers in the layouts slide readers meet: Aperio SVS and generic TIFF.

Both write level 0 tile by tile from a stream of tile rows (memory stays bounded), build each
reduced level by exact area averaging with an integer downsample, and stop once a level
fits in ``max_top_px``. Layouts, as OpenSlide and tifffile/tiffslide detect them:

- Aperio SVS: ImageDescription starting ``Aperio Image Library``, with ``|MPP = ...`` and
  ``|AppMag = ...``; pages level 0, thumbnail (stripped), then the reduced levels (tiled,
  NewSubfileType 0).
- generic TIFF: level 0 then reduced levels as following pages with NewSubfileType 1,
  resolution in pixels per centimetre, or no resolution tags at all (``mpp=None``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import tifffile

Flavour = Literal["svs", "tiff"]
_SOFTWARE = "scorpion-build synth"
_APERIO = "Aperio Image Library v12.0.15"
_BIGTIFF_RAW_BYTES = 3 << 30  # switch to BigTIFF well before 4 GiB of offsets


def level_sizes(
    width: int, height: int, downsample: int, max_top_px: int = 1024
) -> list[tuple[int, int]]:
    """(width, height) of each pyramid level; each level divides the previous exactly."""
    sizes = [(width, height)]
    w, h = width, height
    while max(w, h) > max_top_px and w % downsample == 0 and h % downsample == 0:
        w, h = w // downsample, h // downsample
        sizes.append((w, h))
    return sizes


def write_pyramid(
    path: str | Path,
    tile_rows: Iterable[np.ndarray],
    width: int,
    height: int,
    *,
    flavour: Flavour,
    mpp: float | None,
    tile_px: int = 256,
    downsample: int = 4,
    compression: str = "jpeg",
    jpeg_quality: int = 85,
    max_top_px: int = 1024,
) -> list[tuple[int, int]]:
    """Write a pyramidal RGB TIFF from level-0 tile rows; return the level sizes.

    Parameters
    ----------
    tile_rows : level 0 as rows of tiles, top to bottom, each (width / tile_px,
        tile_px, tile_px, 3) uint8 (see :func:`scorpion_build.synth.render.render_tile_rows`).
    width, height : level-0 size in px, multiples of ``tile_px``.
    flavour : "svs" (Aperio) or "tiff" (generic).
    mpp : level-0 um/px written to the metadata; ``None`` writes none (generic TIFF only).
    """
    if width % tile_px or height % tile_px:
        raise ValueError(f"{path}: level-0 size {width}x{height} must be a multiple of {tile_px}")
    if flavour == "svs" and mpp is None:
        raise ValueError(f"{path}: an Aperio SVS needs an mpp; use flavour='tiff' to omit it")
    sizes = level_sizes(width, height, downsample, max_top_px)
    reduced = np.empty((sizes[1][1], sizes[1][0], 3), np.uint8) if len(sizes) > 1 else None
    codec: dict = {"compression": compression}
    if compression == "jpeg":
        codec["compressionargs"] = {"level": int(jpeg_quality)}
    common = dict(photometric="rgb", metadata=None, software=_SOFTWARE, **codec)
    tiles = _tiles(tile_rows, width, height, tile_px, downsample, reduced)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > _BIGTIFF_RAW_BYTES) as tif:
        tif.write(
            tiles,
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(tile_px, tile_px),
            description=_description(flavour, sizes, 0, tile_px, jpeg_quality, mpp),
            **_resolution(flavour, mpp, 1.0),
            **common,
        )
        if flavour == "svs":
            thumb = _thumbnail(reduced if reduced is not None else None, sizes)
            if thumb is not None:
                tif.write(
                    thumb,
                    description=f"{_APERIO} \r\n{width}x{height} -> "
                    f"{thumb.shape[1]}x{thumb.shape[0]} - ",
                    **common,
                )
        level = reduced
        for k in range(1, len(sizes)):
            if k > 1:
                level = cv2.resize(level, sizes[k], interpolation=cv2.INTER_AREA)
            tif.write(
                level,
                tile=(tile_px, tile_px),
                subfiletype=0 if flavour == "svs" else 1,
                description=_description(flavour, sizes, k, tile_px, jpeg_quality, mpp),
                **_resolution(flavour, mpp, float(downsample**k)),
                **common,
            )
    return sizes


def _tiles(
    tile_rows: Iterable[np.ndarray],
    width: int,
    height: int,
    tile_px: int,
    downsample: int,
    reduced: np.ndarray | None,
) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order; fills ``reduced`` (level 1) on the way."""
    n_x, row = width // tile_px, 0
    small = tile_px // downsample
    for tiles in tile_rows:
        if tiles.shape != (n_x, tile_px, tile_px, 3):
            raise ValueError(f"a row of tiles has shape {tiles.shape}, expected {n_x} tiles")
        if reduced is not None:
            # area averaging never crosses a tile edge (tile_px % downsample == 0), so the
            # tiles can be reduced stacked and laid side by side afterwards
            stacked = tiles.reshape(n_x * tile_px, tile_px, 3)
            shrunk = cv2.resize(stacked, (small, n_x * small), interpolation=cv2.INTER_AREA)
            reduced[row // downsample : row // downsample + small] = (
                shrunk.reshape(n_x, small, small, 3).transpose(1, 0, 2, 3).reshape(small, -1, 3)
            )
        yield from tiles
        row += tile_px
    if row != height:
        raise ValueError(f"tile rows covered {row} rows, expected {height}")


def _description(
    flavour: Flavour,
    sizes: list[tuple[int, int]],
    k: int,
    tile_px: int,
    quality: int,
    mpp: float | None,
) -> str | None:
    if flavour != "svs":
        return None
    (w0, h0), (w, h) = sizes[0], sizes[k]
    head = f"{_APERIO} \r\n{w0}x{h0} [0,0 {w0}x{h0}] ({tile_px}x{tile_px})"
    if k:
        head += f" -> {w}x{h}"
    mag = 40 if mpp < 0.375 else 20
    return f"{head} JPEG/RGB Q={quality}|AppMag = {mag}|MPP = {mpp:.4f}|ScanScope ID = SYNTH"


def _resolution(flavour: Flavour, mpp: float | None, downsample: float) -> dict:
    # Aperio keeps its mpp in the description only, as real SVS files do
    if mpp is None or flavour == "svs":
        return {}
    px_per_cm = 1e4 / (mpp * downsample)
    return {"resolution": (px_per_cm, px_per_cm), "resolutionunit": "CENTIMETER"}


def _thumbnail(level1: np.ndarray | None, sizes: list[tuple[int, int]]) -> np.ndarray | None:
    if level1 is None:
        return None
    h, w = level1.shape[:2]
    scale = min(1.0, 768.0 / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(level1, size, interpolation=cv2.INTER_AREA)
