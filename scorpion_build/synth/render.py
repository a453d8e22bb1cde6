"""Render one scan, strip by strip, by resampling the coloured specimen through its geometry."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.synth.placement import ScanGeometry
from scorpion_build.synth.styles import NoiseBank, ScannerStyle

_TILES_PER_REMAP = 64  # 64 x 256 px stacked = 16,384 rows, well inside OpenCV's 32,767


def render_tile_rows(
    specimen_rgb: np.ndarray,
    specimen_mpp: float,
    geometry: ScanGeometry,
    style: ScannerStyle,
    rng: np.random.Generator,
    tile_px: int = 256,
) -> Iterator[np.ndarray]:
    """Yield the scan's level 0 one row of tiles at a time, top to bottom.

    Parameters
    ----------
    specimen_rgb : (H, W, 3) uint8, the specimen as this scanner colours and blurs it
        (:meth:`ScannerStyle.colourize`), pixel (i, j) covering [j, j+1) x [i, i+1) * mpp um.
    specimen_mpp : um per pixel of ``specimen_rgb``.
    geometry : where each scan pixel looks in the specimen (exactly the ground-truth map);
        its size must be a multiple of ``tile_px``.
    style : supplies the glass colour seen outside the raster and the sensor noise.
    rng : noise stream of this scan.

    Yields
    ------
    (n_tiles_x, tile_px, tile_px, 3) uint8 arrays. Only one row of tiles and its sampling
    maps are held at a time, so memory stays bounded whatever the scan size.
    """
    # specimen um -> the raster's OpenCV coordinates (pixel centres at integers)
    post = geo.compose(geo.translation(-0.5, -0.5), geo.scaling(1.0 / specimen_mpp))
    glass = style.glass_rgb()
    bank = NoiseBank(style.noise, rng) if style.noise > 0 else None
    n_x = geometry.width_px // tile_px
    for row0 in range(0, geometry.height_px, tile_px):
        map_x, map_y = geometry.sample_maps(row0, row0 + tile_px, post, chunk_cols=tile_px)
        tiles = np.empty((n_x, tile_px, tile_px, 3), np.uint8)
        # tiles stacked vertically form one 2-D map, so one remap fills many tiles; OpenCV
        # refuses images over 32,767 px a side, so a wide slide takes several calls
        for t0 in range(0, n_x, _TILES_PER_REMAP):
            t1 = min(n_x, t0 + _TILES_PER_REMAP)
            rows = (t1 - t0) * tile_px
            tiles[t0:t1] = cv2.remap(
                specimen_rgb,
                map_x[t0:t1].reshape(rows, tile_px),
                map_y[t0:t1].reshape(rows, tile_px),
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=glass,
            ).reshape(t1 - t0, tile_px, tile_px, 3)
        tiles = tiles.reshape(n_x * tile_px, tile_px, 3)
        if bank is not None:
            tiles = bank.apply(tiles, rng)
        yield tiles.reshape(n_x, tile_px, tile_px, 3)


def assemble(tile_rows: Iterator[np.ndarray]) -> np.ndarray:
    """Stitch the output of :func:`render_tile_rows` into one image (small scans, tests)."""
    rows = [np.concatenate(list(r), axis=1) for r in tile_rows]
    return np.concatenate(rows, axis=0)
