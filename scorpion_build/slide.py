"""Open a whole-slide image (openslide first, tiffslide fallback) and read it at a target mpp.

One narrow class, :class:`Slide`, hides the vendor mess: levels with their true per-axis
downsamples, mpp from metadata or an override, and reads that return RGB uint8 with white
where the slide is transparent, out of bounds or outside the scanned area. Coordinates
follow docs/contracts.md section 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.backends import (
    Reader,
    SlideError,
    flatten_on_white,
    mpp_from_properties,
    open_backend,
    scanned_bounds,
)

__all__ = ["Level", "MissingMppError", "Resampler", "Slide", "SlideError"]

# Largest region read at once (~1.2 GB RGB): a coarser level always exists in a real pyramid,
# so only a file without one asks for more, and it fails with a message instead of swapping.
MAX_READ_PX = 400_000_000


class MissingMppError(SlideError):
    pass


@dataclass(frozen=True)
class Level:
    width: int
    height: int
    downsample_x: float  # true per-axis downsample: level-0 size / level size
    downsample_y: float


class Slide:
    """A whole-slide image with a pyramid.

    Parameters
    ----------
    path : file to open.
    reader : "auto" (openslide, then tiffslide, then a plain-image reader), or one of them.
    mpp : (x, y) or a single float in um/px overriding the file's metadata.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        reader: Reader = "auto",
        mpp: float | tuple[float, float] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SlideError(f"{self.path}: file not found; check the path in the slide table")
        self._backend, self.reader = open_backend(self.path, reader)
        props = self._backend.properties
        self.properties: dict[str, str] = dict(props)
        self.vendor: str = (
            props.get("openslide.vendor")
            or props.get("tiffslide.vendor")
            or ("image" if self.reader == "image" else "unknown")
        )
        w0, h0 = self._backend.level_dimensions[0]
        self.levels: tuple[Level, ...] = tuple(
            Level(int(w), int(h), w0 / w, h0 / h) for w, h in self._backend.level_dimensions
        )
        self.bounds = scanned_bounds(props, self.dimensions)
        if mpp is not None:
            mx, my = (mpp, mpp) if np.isscalar(mpp) else mpp
            self._mpp: tuple[float, float] | None = (float(mx), float(my))
            self.mpp_source = "override"
        else:
            self._mpp = mpp_from_properties(props)
            self.mpp_source = "metadata" if self._mpp else "missing"

    # -- metadata ---------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.levels[0].width, self.levels[0].height

    @property
    def level_count(self) -> int:
        return len(self.levels)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((lv.width, lv.height) for lv in self.levels)

    @property
    def level_downsamples(self) -> tuple[tuple[float, float], ...]:
        return tuple((lv.downsample_x, lv.downsample_y) for lv in self.levels)

    @property
    def has_mpp(self) -> bool:
        return self._mpp is not None

    @property
    def mpp(self) -> tuple[float, float]:
        """Level-0 microns per pixel (x, y)."""
        if self._mpp is None:
            raise MissingMppError(
                f"{self.path}: no microns-per-pixel in the file's metadata; add an `mpp` column "
                "to the slide table (CSV: slide_id,scanner,path,mpp) with the level-0 um/px"
            )
        return self._mpp

    def size_um(self) -> tuple[float, float]:
        w, h = self.dimensions
        return w * self.mpp[0], h * self.mpp[1]

    def best_level(self, downsample: float) -> int:
        """Coarsest level whose downsample does not exceed ``downsample`` (on either axis).

        That is the finest-needed level: reading it loses no resolution, and reading any
        finer level only costs decoding.
        """
        best = 0
        for k, lv in enumerate(self.levels):
            if max(lv.downsample_x, lv.downsample_y) <= downsample * (1 + 1e-6):
                best = k
        return best

    # -- pixels ---------------------------------------------------------------------------
    def read(self, level: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """Read ``box = (x, y, w, h)`` in integer level-``level`` pixels as RGB uint8 (h, w, 3).

        Parts outside the level or outside the scanned area (:attr:`bounds`), and
        transparent pixels, are white.
        """
        x, y, w, h = (int(v) for v in box)
        if w <= 0 or h <= 0:
            raise ValueError(f"empty box {box}")
        lx0, ly0, lx1, ly1 = self._level_bounds(level)
        x0, y0 = max(x, lx0), max(y, ly0)
        x1, y1 = min(x + w, lx1), min(y + h, ly1)
        if x1 <= x0 or y1 <= y0:
            return np.full((h, w, 3), 255, dtype=np.uint8)
        try:
            rgb = flatten_on_white(self._backend.read_level(level, x0, y0, x1 - x0, y1 - y0))
        except Exception as exc:
            raise SlideError(
                f"{self.path}: cannot decode level {level} at ({x0}, {y0}) "
                f"[{exc.__class__.__name__}: {exc}]; the file may be truncated or corrupt - "
                "re-copy or re-export it from the scanner"
            ) from exc
        if (x0, y0, x1, y1) == (x, y, x + w, y + h):  # inside the level: no padding copy
            return rgb
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        out[y0 - y : y1 - y, x0 - x : x1 - x] = rgb
        return out

    def _level_bounds(self, level: int) -> tuple[int, int, int, int]:
        """Scanned area on level ``level`` as (x0, y0, x1, y1) px, widened to whole pixels."""
        lv = self.levels[level]
        if self.bounds is None:
            return 0, 0, lv.width, lv.height
        bx, by, bw, bh = self.bounds
        return (
            max(0, int(np.floor(bx / lv.downsample_x))),
            max(0, int(np.floor(by / lv.downsample_y))),
            min(lv.width, int(np.ceil((bx + bw) / lv.downsample_x))),
            min(lv.height, int(np.ceil((by + bh) / lv.downsample_y))),
        )

    def read_warped(
        self,
        patch_to_slide: geo.Affine,
        size_px: tuple[int, int],
        interpolation: int = cv2.INTER_LINEAR,
    ) -> np.ndarray:
        """Resample the slide through an affine into a ``(width, height)`` RGB patch.

        ``patch_to_slide`` maps output-patch pixel coordinates to level-0 coordinates. Reads
        the coarsest level that is not coarser than the output, block-averages by the integer
        part of the remaining scale and blurs for the rest (shift-invariant, docs/contracts.md
        section 2), then warps once; memory is bounded by the output footprint.
        """
        return self.prepare(patch_to_slide, size_px).warp(patch_to_slide, size_px, interpolation)

    def prepare(
        self, patch_to_slide: geo.Affine, size_px: tuple[int, int], margin_px: float = 0.0
    ) -> Resampler:
        """Read (once) the pixels needed for ``patch_to_slide`` and any affine within
        ``margin_px`` output pixels of it, at the output's resolution.

        The returned :class:`Resampler` warps without touching the file again, so a patch can
        be re-sampled after local refinement at no extra decoding cost.
        """
        out_w, out_h = (int(v) for v in size_px)
        m = np.asarray(patch_to_slide, dtype=np.float64).reshape(2, 3)
        # level-0 px per output px along the finest direction: do not lose resolution
        _, min_scale = geo.linear_scales(m)
        level = self.best_level(min_scale)
        lv = self.levels[level]
        to_level = geo.scaling(1.0 / lv.downsample_x, 1.0 / lv.downsample_y)
        m_level = geo.compose(to_level, m)  # output px -> level px
        # Area-average by the integer part k of the remaining scale on a grid anchored at the
        # level origin (window start snapped to a multiple of k), then a Gaussian for the
        # fractional rest: both are shift-invariant, so the patch depends only on the level
        # and the affine, never on the window read - patch_to_slide reproduces it exactly.
        _, remain = geo.linear_scales(m_level)
        k = max(1, int(np.floor(remain + 1e-6)))
        rest = remain / k
        sigma = 0.5 * np.sqrt(rest * rest - 1.0) if rest > 1.1 else 0.0
        pad = 2 + k + int(np.ceil(3 * sigma * k))  # level px beyond the (margin) footprint
        corners = geo.apply(
            m_level,
            geo.box_corners(-margin_px, -margin_px, out_w + 2 * margin_px, out_h + 2 * margin_px),
        )
        bx0 = (int(np.floor(corners[:, 0].min() - pad)) // k) * k
        by0 = (int(np.floor(corners[:, 1].min() - pad)) // k) * k
        bw = -(-(int(np.ceil(corners[:, 0].max() + pad)) - bx0) // k) * k
        bh = -(-(int(np.ceil(corners[:, 1].max() + pad)) - by0) // k) * k
        if bw * bh > MAX_READ_PX:  # e.g. a thumbnail of a full-size slide without a pyramid
            raise SlideError(
                f"{self.path}: reading {bw}x{bh} px of level {level} for a "
                f"{out_w}x{out_h} px output; the file has no level coarse enough - re-export "
                "it as a pyramidal TIFF (e.g. vips tiffsave --pyramid --tile)"
            )
        region = self.read(level, (bx0, by0, bw, bh))
        level0_to_region = geo.compose(geo.translation(-bx0, -by0), to_level)
        if k > 1:  # exact block means (INTER_AREA with an integer factor)
            region = cv2.resize(region, (bw // k, bh // k), interpolation=cv2.INTER_AREA)
            level0_to_region = geo.compose(geo.scaling(1.0 / k), level0_to_region)
        if sigma > 0:
            region = cv2.GaussianBlur(region, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
        return Resampler(region, level0_to_region, level)

    def read_region_at(
        self, box_level0: tuple[float, float, float, float], mpp: float
    ) -> np.ndarray:
        """Read ``box_level0 = (x, y, w, h)`` (level-0 px, may be fractional) at ``mpp`` um/px.

        The output has ``round(w * mpp_x / mpp) x round(h * mpp_y / mpp)`` pixels.
        """
        x, y, w, h = (float(v) for v in box_level0)
        mx, my = self.mpp
        out_w = max(1, round(w * mx / mpp))
        out_h = max(1, round(h * my / mpp))
        m = geo.compose(geo.translation(x, y), geo.scaling(w / out_w, h / out_h))
        return self.read_warped(m, (out_w, out_h))

    def thumbnail_at(self, mpp: float) -> np.ndarray:
        """The whole slide at ``mpp`` um/px (use a coarse mpp: memory is the output size)."""
        w, h = self.dimensions
        return self.read_region_at((0.0, 0.0, float(w), float(h)), mpp)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Slide({str(self.path)!r}, reader={self.reader!r}, vendor={self.vendor!r}, "
            f"dims={self.dimensions}, levels={self.level_count}, mpp={self._mpp})"
        )


class Resampler:
    """Pixels read once for a patch, warped on demand through any nearby patch affine."""

    def __init__(self, region: np.ndarray, level0_to_region: geo.Affine, level: int) -> None:
        self.region = region
        self.level0_to_region = level0_to_region
        self.level = level

    def warp(
        self,
        patch_to_slide: geo.Affine,
        size_px: tuple[int, int],
        interpolation: int = cv2.INTER_LINEAR,
    ) -> np.ndarray:
        m_region = geo.compose(self.level0_to_region, patch_to_slide)
        return geo.warp_to(self.region, m_region, size_px, fill=255, interpolation=interpolation)
