"""Local, sub-pixel alignment of a patch to the reference patch of the same region.

Two steps on stain-robust grey images (optical density): a global cross-correlation shift,
then block-wise shifts fitted to a small affine with outlier blocks rejected (coarse-to-fine
in the spirit of palom). Sub-pixel peaks by DFT upsampling (Guizar-Sicairos et al., 2008).
:func:`phase_shift` is shared with the registration's fine step.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.registration import phase_cross_correlation

from scorpion_build import geometry as geo
from scorpion_build.tissue import od_grey

# A block joins the affine fit only with enough texture and a clear correlation peak.
MIN_BLOCK_STD_OD = 0.02
MIN_PEAK_RESPONSE = 0.3  # correlation coefficient at the peak
SIMILARITY_SIGMA_UM = 1.5


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
    return od_grey(patch_rgb).astype(np.float32)


def similarity(ref_grey: np.ndarray, mov_grey: np.ndarray, mpp: float) -> float:
    """NCC after a Gaussian blur of :data:`SIMILARITY_SIGMA_UM`: scanners differ in optics at
    the finest scale, so raw-pixel NCC would score blur, not alignment."""
    sigma = SIMILARITY_SIGMA_UM / mpp
    return ncc(cv2.GaussianBlur(ref_grey, (0, 0), sigma), cv2.GaussianBlur(mov_grey, (0, 0), sigma))


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two equally sized grey images."""
    a = a.astype(np.float32) - np.float32(a.mean())
    b = b.astype(np.float32) - np.float32(b.mean())
    denom = np.sqrt(float(np.dot(a.ravel(), a.ravel())) * float(np.dot(b.ravel(), b.ravel())))
    return float(np.dot(a.ravel(), b.ravel()) / denom) if denom > 0 else 0.0


def phase_shift(ref: np.ndarray, mov: np.ndarray) -> tuple[np.ndarray, float]:
    """Sub-pixel shift ``d`` (x, y) such that ``mov(p + d) ~ ref(p)``, and the correlation
    peak as a normalised cross-correlation (0..1).

    Windowed cross-correlation with DFT upsampling (Guizar-Sicairos et al., Opt. Lett. 2008,
    via scikit-image): ~0.02 px, where OpenCV's phaseCorrelate centroid is biased towards
    whole pixels by ~0.2 px, the same way for every block, which no fit averages out.
    """
    ref = ref.astype(np.float32)
    mov = mov.astype(np.float32)
    window = cv2.createHanningWindow(ref.shape[::-1], cv2.CV_32F)
    # remove the mean so the window edge does not become the strongest "feature"
    a = (ref - ref.mean()) * window
    b = (mov - mov.mean()) * window
    shift, error, _ = phase_cross_correlation(a, b, upsample_factor=20, normalization=None)
    peak = float(np.sqrt(max(0.0, 1.0 - float(error) ** 2)))
    # scikit-image returns the (row, col) shift that moves ``mov`` onto ``ref``: the negative
    return np.array([-shift[1], -shift[0]], dtype=np.float64), peak


def estimate_correction(
    ref_grey: np.ndarray,
    mov_grey: np.ndarray,
    max_shift_px: float,
    blocks: int = 4,
    stage: str = "shift",
) -> Correction:
    """Correction that maps ``mov`` onto ``ref`` (both grey, same size).

    ``stage="shift"``: global translation. ``stage="affine"``: a ``blocks x blocks`` grid of
    phase correlations fitted robustly (RANSAC, 0.75 px) to an affine.
    """
    h, w = ref_grey.shape
    if stage == "shift":
        (dx, dy), resp = phase_shift(ref_grey, mov_grey)
        if not np.isfinite(dx) or np.hypot(dx, dy) > max_shift_px:
            return Correction.rejected(
                f"shift {np.hypot(dx, dy):.1f} px exceeds {max_shift_px:.0f} px", resp, 0
            )
        if resp < MIN_PEAK_RESPONSE:
            return Correction.rejected(f"no clear correlation peak (response {resp:.2f})", resp, 0)
        return Correction(geo.translation(dx, dy), (dx, dy), resp, 1, True)

    bh, bw = h // blocks, w // blocks
    src, dst = [], []
    for by in range(blocks):
        for bx in range(blocks):
            r = ref_grey[by * bh : (by + 1) * bh, bx * bw : (bx + 1) * bw]
            m = mov_grey[by * bh : (by + 1) * bh, bx * bw : (bx + 1) * bw]
            if r.std() < MIN_BLOCK_STD_OD or m.std() < MIN_BLOCK_STD_OD:
                continue
            (dx, dy), resp = phase_shift(r, m)
            if resp < MIN_PEAK_RESPONSE or np.hypot(dx, dy) > max(2.0, bw / 8):
                continue
            cx, cy = (bx + 0.5) * bw, (by + 0.5) * bh
            src.append((cx, cy))
            dst.append((cx + dx, cy + dy))
    if len(src) < 6:
        return Correction.rejected(
            f"only {len(src)} textured blocks for the affine step", 0.0, len(src)
        )
    src_a, dst_a = np.float32(src), np.float32(dst)
    # block centres are already in our convention; the affine is estimated between them
    # directly, no pixel-grid conversion is involved
    m, inliers = cv2.estimateAffine2D(
        src_a, dst_a, method=cv2.RANSAC, ransacReprojThreshold=0.75, refineIters=20
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
    centre = geo.apply(m, [[w / 2, h / 2]])[0] - (w / 2, h / 2)
    return Correction(m.astype(np.float64), (float(centre[0]), float(centre[1])), 1.0, n_in, True)
