"""Local, sub-pixel refinement of a patch's offset against the reference patch of its region.

The global registration is accurate to a few um; each non-reference patch is then aligned
to the reference patch on stain-robust grey views (optical density) at 1/:data:`REFINE_SCALE`
of the patch resolution, in two steps: a global phase-correlation shift, then block-wise
shifts fitted to a small affine with outlier blocks rejected (coarse-to-fine in the spirit
of palom). Corrections are affines in output-patch px (``docs/contracts.md`` section 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.correlation import ncc, phase_shift, phase_shifts
from scorpion_build.slide import Resampler
from scorpion_build.tissue import od_grey

# A block joins the affine fit only with enough texture and a clear correlation peak.
MIN_BLOCK_STD_OD = 0.02
MIN_PEAK_RESPONSE = 0.3  # correlation coefficient at the peak
SIMILARITY_SIGMA_UM = 1.5
# The global shift is estimated at half resolution on images at least this large.
COARSE_SHIFT_MIN_PX = 256
# Refinement is estimated at half the patch resolution: four times less work, and the
# sub-pixel phase-correlation peak still resolves ~0.1 um at the default 0.78 um/px.
REFINE_SCALE = 2
# Local refinement never moves a patch further than this (um): larger residuals mean the
# global registration is wrong, which refinement must not paper over.
MAX_CORRECTION_UM = 30.0


@dataclass
class Correction:
    """An affine in output-patch px: sample the scan at ``patch_to_slide . affine``."""

    affine: geo.Affine
    shift_px: tuple[float, float]  # translation at the patch centre, output px
    response: float  # global phase-correlation peak (0..1)
    blocks_used: int
    accepted: bool
    message: str = ""

    @classmethod
    def rejected(cls, message: str, response: float = 0.0, blocks_used: int = 0) -> Correction:
        """No correction (identity), with the reason."""
        return cls(geo.identity(), (0.0, 0.0), response, blocks_used, False, message)


def grey(patch_rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 mean optical density of an RGB patch: tissue bright, stain-robust."""
    return od_grey(patch_rgb).astype(np.float32)


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Means of ``f x f`` blocks (a ragged right/bottom edge is dropped)."""
    if f == 1:
        return img
    h, w = (v // f * f for v in img.shape[:2])
    return cv2.resize(img[:h, :w], (w // f, h // f), interpolation=cv2.INTER_AREA)


def power_of_two_at_most(x: float) -> int:
    """Largest power of two <= ``x`` (1 below 2): OpenCV's block mean is fastest at those."""
    return 2 ** max(0, int(np.log2(x)))


def patch_similarity(ref_grey: np.ndarray, mov_grey: np.ndarray, mpp: float) -> float:
    """NCC of two grey views at ``mpp`` um/px after a Gaussian blur of
    :data:`SIMILARITY_SIGMA_UM`: scanners differ in optics at the finest scale, so raw-pixel
    NCC would score blur, not alignment."""
    sigma = SIMILARITY_SIGMA_UM / mpp
    blurred = (cv2.GaussianBlur(g, (0, 0), sigma) for g in (ref_grey, mov_grey))
    return ncc(*blurred, dtype=np.float32)


def estimate_correction(
    ref_grey: np.ndarray,
    mov_grey: np.ndarray,
    max_shift_px: float,
    blocks: int = 4,
    stage: str = "shift",
) -> Correction:
    """Correction that maps ``mov`` onto ``ref`` (both grey, same size, px).

    ``stage="shift"``: global translation, rejected beyond ``max_shift_px``.
    ``stage="affine"``: a ``blocks x blocks`` grid of phase correlations fitted robustly
    (RANSAC, 0.75 px) to an affine.
    """
    if stage == "shift":
        return _shift_correction(ref_grey, mov_grey, max_shift_px)
    return _affine_correction(ref_grey, mov_grey, blocks)


def _shift_correction(ref_grey: np.ndarray, mov_grey: np.ndarray, max_px: float) -> Correction:
    # The shift only has to land within the blocks' reach: estimated on 2x2 block means
    # (4x less work, ~0.06 px), then the affine step works at full resolution.
    f = 2 if min(ref_grey.shape) >= COARSE_SHIFT_MIN_PX else 1
    (dx, dy), resp = phase_shift(*(block_mean(g, f) for g in (ref_grey, mov_grey)))
    dx, dy = dx * f, dy * f
    if not np.isfinite(dx) or np.hypot(dx, dy) > max_px:
        return Correction.rejected(f"shift {np.hypot(dx, dy):.1f} px exceeds {max_px:.0f} px", resp)
    if resp < MIN_PEAK_RESPONSE:
        return Correction.rejected(f"no clear correlation peak (response {resp:.2f})", resp)
    return Correction(geo.translation(dx, dy), (dx, dy), resp, 1, True)


def _block_shifts(
    ref_grey: np.ndarray, mov_grey: np.ndarray, blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n, 2) of the textured blocks with a clear, plausible peak, and where each
    centre lands in ``mov`` (n, 2), in px."""
    h, w = ref_grey.shape
    bh, bw = h // blocks, w // blocks

    def grid(img: np.ndarray) -> np.ndarray:  # (blocks * blocks, bh, bw), row-major
        cut = img[: bh * blocks, : bw * blocks].reshape(blocks, bh, blocks, bw)
        return cut.swapaxes(1, 2).reshape(-1, bh, bw)

    ref_blocks, mov_blocks = grid(ref_grey), grid(mov_grey)
    textured = np.flatnonzero(
        (ref_blocks.std(axis=(1, 2)) >= MIN_BLOCK_STD_OD)
        & (mov_blocks.std(axis=(1, 2)) >= MIN_BLOCK_STD_OD)
    )
    d, resp = phase_shifts(ref_blocks[textured], mov_blocks[textured])
    good = (resp >= MIN_PEAK_RESPONSE) & (np.hypot(d[:, 0], d[:, 1]) <= max(2.0, bw / 8))
    src = np.stack([(textured % blocks + 0.5) * bw, (textured // blocks + 0.5) * bh], axis=1)
    return src[good], src[good] + d[good]


def _affine_correction(ref_grey: np.ndarray, mov_grey: np.ndarray, blocks: int) -> Correction:
    src, dst = _block_shifts(ref_grey, mov_grey, blocks)
    if len(src) < 6:
        return Correction.rejected(
            f"only {len(src)} textured blocks for the affine step", 0.0, len(src)
        )
    # block centres are already in our convention; the affine is estimated between them
    # directly, no pixel-grid conversion is involved
    m, inliers = cv2.estimateAffine2D(
        np.float32(src),
        np.float32(dst),
        method=cv2.RANSAC,
        ransacReprojThreshold=0.75,
        refineIters=20,
    )
    n_in = int(inliers.sum()) if inliers is not None else 0
    if m is None or n_in < 6:
        return Correction.rejected(
            "block shifts disagree; kept the shift-only correction", 0.0, n_in
        )
    scales = geo.linear_scales(m)
    if max(abs(scales[0] - 1), abs(scales[1] - 1)) > 0.02:
        return Correction.rejected(
            f"implausible local scale {scales[0]:.3f}/{scales[1]:.3f}", 0.0, n_in
        )
    h, w = ref_grey.shape
    centre = geo.apply(m, [[w / 2, h / 2]])[0] - (w / 2, h / 2)
    return Correction(m.astype(np.float64), (float(centre[0]), float(centre[1])), 1.0, n_in, True)


class SmallGrey:
    """Stain-robust grey views of a :class:`~scorpion_build.slide.Resampler`'s pixels at
    about 1/:data:`REFINE_SCALE` of the patch resolution.

    The region is block-averaged by a whole factor and turned into optical density once;
    each refinement step then only warps one small float image, which absorbs the
    fractional rest of the scale.
    """

    def __init__(self, source: Resampler, patch_to_slide: geo.Affine) -> None:
        _, region_px = geo.linear_scales(geo.compose(source.level0_to_region, patch_to_slide))
        k = power_of_two_at_most(REFINE_SCALE * region_px)  # region px per small px
        self.grey = grey(block_mean(source.region, k))
        self.level0_to_small = geo.compose(geo.scaling(1.0 / k), source.level0_to_region)

    def warp(self, patch_to_slide: geo.Affine, size: int) -> np.ndarray:
        """The (size / REFINE_SCALE)-px square grey view of a ``size``-px patch."""
        m = geo.compose(self.level0_to_small, patch_to_slide, geo.scaling(REFINE_SCALE))
        n = size // REFINE_SCALE
        return geo.warp_to(self.grey, m, (n, n))


def refine_patch_offset(
    ref_small: np.ndarray, source: SmallGrey, patch_to_slide: geo.Affine, size: int, mpp: float
) -> tuple[geo.Affine, Correction]:
    """Align a ``size``-px patch at ``mpp`` um/px to the reference patch's grey view.

    A shift, then a block affine, each estimated at 1/:data:`REFINE_SCALE` resolution
    against ``ref_small`` and never beyond :data:`MAX_CORRECTION_UM`. Returns the refined
    ``patch_to_slide`` and the correction (in output px).
    """
    to_small = geo.scaling(1.0 / REFINE_SCALE)
    max_px = MAX_CORRECTION_UM / (mpp * REFINE_SCALE)

    def estimate(m_now: geo.Affine, stage: str) -> Correction:
        return estimate_correction(ref_small, source.warp(m_now, size), max_px, stage=stage)

    def to_output(c: geo.Affine) -> geo.Affine:  # small-px correction -> output-px correction
        return geo.compose(geo.invert(to_small), c, to_small)

    shift = estimate(patch_to_slide, "shift")
    if not shift.accepted:
        return patch_to_slide, shift
    total = to_output(shift.affine)
    fine = estimate(geo.compose(patch_to_slide, total), "affine")
    if fine.accepted:
        total = geo.compose(total, to_output(fine.affine))
    centre = geo.apply(total, [[size / 2, size / 2]])[0] - size / 2
    result = Correction(
        total,
        (float(centre[0]), float(centre[1])),
        shift.response,
        fine.blocks_used,
        True,
        "" if fine.accepted else fine.message,
    )
    return geo.compose(patch_to_slide, total), result
