"""Pyramidal TIFF writers in the layouts slide readers meet: Aperio SVS and generic TIFF.

Both write level 0 tile by tile from a stream of tile rows and each reduced level, exact
area averages with an integer downsample, from a temporary spool (:mod:`.pyramid`), so
memory is bounded by one strip whatever the slide size; they stop once a level fits in
``max_top_px``. The scanners' own containers (BIF, Philips TIFF) are in :mod:`.native`.
Layouts, as OpenSlide and tifffile/tiffslide detect them:

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

import numpy as np
import tifffile

from scorpion_build.synth.pyramid import (
    LevelSpool,
    strips_from_tile_rows,
    thumbnail,
    write_levels,
)

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
    common = page_common(compression, jpeg_quality)

    def options(k: int) -> dict:
        return dict(
            subfiletype=0 if flavour == "svs" or k == 0 else 1,
            description=_description(flavour, sizes, k, tile_px, jpeg_quality, mpp),
            **_resolution(flavour, mpp, float(downsample**k)),
            **common,
        )

    def thumbnail_page(level1: LevelSpool | None) -> None:
        # Aperio puts a stripped thumbnail between level 0 and the reduced levels
        if flavour != "svs" or level1 is None:
            return
        w1, h1 = sizes[1]
        scale = min(1.0, 768.0 / max(w1, h1))
        size = (max(1, round(w1 * scale)), max(1, round(h1 * scale)))
        thumb = thumbnail(level1.strips(tile_px), size, h1)
        desc = f"{_APERIO} \r\n{width}x{height} -> {size[0]}x{size[1]} - "
        tif.write(thumb, description=desc, **common)

    with tifffile.TiffWriter(path, bigtiff=needs_bigtiff(width, height)) as tif:
        write_levels(
            tif,
            checked_strips(tile_rows, width, height, tile_px),
            sizes,
            tile_px,
            options,
            after_level0=thumbnail_page,
        )
    return sizes


def page_common(compression: str, jpeg_quality: int, software: str = _SOFTWARE) -> dict:
    """``tif.write`` options every page of a synthetic slide shares."""
    codec: dict = {"compression": compression}
    if compression == "jpeg":
        codec["compressionargs"] = {"level": int(jpeg_quality)}
    # one encoder thread: tifffile's threaded encoding reads ahead up to 256 MB of tiles,
    # which would dominate memory at full slide size; the synth is single-threaded anyway
    return dict(photometric="rgb", metadata=None, software=software, maxworkers=1, **codec)


def needs_bigtiff(width: int, height: int) -> bool:
    return width * height * 3 > _BIGTIFF_RAW_BYTES


def checked_strips(
    tile_rows: Iterable[np.ndarray], width: int, height: int, tile_px: int
) -> Iterator[np.ndarray]:
    """Level-0 strips from rendered tile rows, checking that they cover the level exactly."""
    n_x, rows = width // tile_px, 0
    for strip in strips_from_tile_rows(tile_rows):
        if strip.shape != (tile_px, n_x * tile_px, 3):
            raise ValueError(f"a row of tiles makes a strip {strip.shape}, expected {n_x} tiles")
        rows += tile_px
        yield strip
    if rows != height:
        raise ValueError(f"tile rows covered {rows} rows, expected {height}")


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
