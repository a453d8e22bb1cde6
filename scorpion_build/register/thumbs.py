"""Low-resolution views of a scan for registration: RGB, stain-robust grey, tissue mask.

Every view is read at a resolution chosen in um/px (never by pyramid index) and knows the
exact affine from its pixels to the slide's level-0 pixels (docs/contracts.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.correlation import ncc
from scorpion_build.geometry import warp_to
from scorpion_build.slide import Slide
from scorpion_build.tissue import od_grey, tissue_mask, to_uint8

# Coarse-view size targets: ORB needs a few hundred px of tissue; beyond ~2000 px on the long
# side the keypoints only get slower, not better.
COARSE_LONG_SIDE_PX = 1600
COARSE_MPP_RANGE = (2.0, 16.0)


@dataclass
class View:
    """A whole-slide view at ``mpp`` um/px.

    Attributes
    ----------
    rgb : (H, W, 3) uint8.
    od : (H, W) float32 mean optical density (tissue bright).
    grey : (H, W) uint8 contrast-normalised ``od`` (for keypoints and pictures).
    mask : (H, W) bool tissue mask.
    mpp : um per view pixel (isotropic).
    to_level0 : affine, view px -> slide level-0 px.
    """

    rgb: np.ndarray
    od: np.ndarray
    grey: np.ndarray
    mask: np.ndarray
    mpp: float
    to_level0: geo.Affine

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def tissue_mm2(self) -> float:
        return float(self.mask.sum()) * (self.mpp / 1000.0) ** 2


def coarse_mpp_for(*slides: Slide) -> float:
    """A coarse um/px for keypoints: the largest slide fits ~1600 px, clipped to 2-16 um/px."""
    long_um = max(max(s.size_um()) for s in slides)
    lo, hi = COARSE_MPP_RANGE
    return float(np.clip(long_um / COARSE_LONG_SIDE_PX, lo, hi))


def read_view(slide: Slide, mpp: float) -> View:
    """The whole slide at ``mpp`` um/px with its grey image and tissue mask."""
    rgb = slide.thumbnail_at(mpp)
    w0, h0 = slide.dimensions
    # thumbnail_at rounds the output size, so the exact scale is size ratio, not mpp ratio
    to_level0 = geo.scaling(w0 / rgb.shape[1], h0 / rgb.shape[0])
    return view_from_rgb(rgb, mpp, to_level0)


def view_from_rgb(rgb: np.ndarray, mpp: float, to_level0: geo.Affine) -> View:
    od = od_grey(rgb).astype(np.float32)
    mask = tissue_mask(rgb, mpp)
    return View(rgb, od, to_uint8(od, mask), mask, float(mpp), np.asarray(to_level0, float))


def plain_grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance grey (tissue dark), as the paper's plain ORB baseline uses."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def tissue_similarity(
    ref_od: np.ndarray,
    ref_mask: np.ndarray,
    mov_od: np.ndarray,
    mov_mask: np.ndarray,
    ref_to_mov: geo.Affine,
) -> tuple[float, float]:
    """Warp the moving image onto the reference through ``ref_to_mov`` (reference px ->
    moving px) and return (NCC where both show tissue, share of the reference tissue the
    moving image also shows). Missing tissue lowers the second number, not the first, so a
    partial scan is told apart from a wrong alignment."""
    h, w = ref_od.shape[:2]
    od = warp_to(mov_od, ref_to_mov, (w, h))
    mask = warp_to(mov_mask.astype(np.uint8), ref_to_mov, (w, h), interpolation=cv2.INTER_NEAREST)
    both = ref_mask & (mask > 0)
    ref_area = ref_mask.sum()
    overlap = float(both.sum() / ref_area) if ref_area else 0.0
    return ncc(ref_od, od, both), overlap
