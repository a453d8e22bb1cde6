"""Tissue masks and stain-robust grey images from low-resolution RGB.

Optical density (Beer-Lambert: OD = -log10(I / I0)) makes stain amount additive and
largely independent of a scanner's white point, so it is the grey image registration and
patch refinement work on.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.filters import threshold_otsu

# Below this total optical density a pixel is glass whatever Otsu says (clean glass ~0.02-0.05).
MIN_TISSUE_OD = 0.08
# Brightfield glass is bright and absorbs nothing; where the typical pixel's brightest channel
# is this dark (grey levels), light is emitted, not absorbed: a fluorescence scan.
FLUORESCENCE_MAX_MEDIAN = 50
# Emitted signal (brightest channel, 0-1) below this is dark background whatever Otsu says.
MIN_FLUORESCENCE_SIGNAL = 0.08
FLUORESCENCE_NOTE = (
    "dark background: this looks like a fluorescence scan; tissue is taken as the bright "
    "signal, but registration and patch QC are built for brightfield (H&E, IHC): check the "
    "regions and the QC pictures"
)


def _od_lut(background: float) -> np.ndarray:
    i = np.arange(256, dtype=np.float64)
    return (-np.log10(np.clip((i + 1.0) / (background + 1.0), 1e-3, 1.0))).astype(np.float32)


_OD_LUT = _od_lut(255.0)


def optical_density(rgb: np.ndarray, background: float = 255.0) -> np.ndarray:
    """Per-channel optical density (H, W, 3) float32 of an RGB uint8 image."""
    lut = _OD_LUT if background == 255.0 else _od_lut(background)
    return cv2.LUT(np.asarray(rgb, dtype=np.uint8), lut)


_MEAN3 = np.full((1, 3), 1.0 / 3.0, np.float32)


def od_grey(rgb: np.ndarray) -> np.ndarray:
    """Stain-robust grey image: mean optical density over channels, float32 (H, W).

    Tissue is bright, glass is dark: the polarity is the same for every scanner, unlike
    raw intensity under different stain responses.
    """
    return cv2.transform(optical_density(rgb), _MEAN3)


def to_uint8(grey: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Contrast-normalise a float image to uint8 (robust 1-99.5 percentile on ``mask``)."""
    vals = grey[mask] if mask is not None and mask.any() else grey
    if vals.size == 0:
        return np.zeros(grey.shape, np.uint8)
    lo, hi = np.percentile(vals, [1.0, 99.5])
    if hi <= lo:
        hi = lo + 1e-6
    return np.clip((grey - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


def is_fluorescence(rgb: np.ndarray) -> bool:
    """True when an RGB uint8 image has the dark background of a fluorescence scan."""
    step = max(1, max(rgb.shape[:2]) // 256)  # the median needs a sample, not every pixel
    return float(np.median(brightest_channel(rgb[::step, ::step]))) < FLUORESCENCE_MAX_MEDIAN


def brightest_channel(rgb: np.ndarray) -> np.ndarray:
    """(H, W) maximum over the channels of an (H, W, C) image (``rgb.max(axis=2)``, which
    numpy computes ~4x slower for a short last axis)."""
    return np.maximum.reduce([rgb[..., c] for c in range(rgb.shape[2])])


def tissue_mask(rgb: np.ndarray, mpp: float, min_area_um2: float = 2000.0) -> np.ndarray:
    """Boolean tissue mask of an RGB image at ``mpp`` um/px.

    Brightfield (H&E, IHC: any stain absorbs): Otsu on optical density, floored at
    :data:`MIN_TISSUE_OD`. Fluorescence (:func:`is_fluorescence`): Otsu on the brightest
    channel, floored at :data:`MIN_FLUORESCENCE_SIGNAL`, so a dark background is never read
    as dense tissue. Then closed to fill nuclei gaps, and blobs under ``min_area_um2`` dropped.
    """
    if is_fluorescence(rgb):
        return fluorescence_mask(rgb, mpp, min_area_um2)
    return od_tissue_mask(od_grey(rgb), mpp, min_area_um2)


def fluorescence_mask(rgb: np.ndarray, mpp: float, min_area_um2: float = 2000.0) -> np.ndarray:
    """:func:`tissue_mask` of an image already known to be fluorescence."""
    signal = brightest_channel(rgb).astype(np.float32) / 255.0
    return _signal_mask(signal, mpp, min_area_um2, MIN_FLUORESCENCE_SIGNAL)


def od_tissue_mask(od: np.ndarray, mpp: float, min_area_um2: float = 2000.0) -> np.ndarray:
    """:func:`tissue_mask` of a brightfield :func:`od_grey` image."""
    return _signal_mask(od, mpp, min_area_um2, MIN_TISSUE_OD)


def _signal_mask(signal: np.ndarray, mpp: float, min_area_um2: float, floor: float) -> np.ndarray:
    """Pixels well above the background of a float image where tissue is high."""
    signal = cv2.GaussianBlur(signal, (0, 0), sigmaX=max(0.5, 2.0 / mpp))
    thr = floor
    if signal.max() > floor:
        thr = max(floor, float(threshold_otsu(signal)) * 0.5)
    mask = (signal > thr).astype(np.uint8)
    k = max(1, int(round(10.0 / mpp)))
    mask = cv2.morphologyEx(
        mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    )
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_px = min_area_um2 / (mpp * mpp)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
    return keep[labels]
