"""Fine registration: block-wise phase correlation on tissue blocks at ~2 um/px, then a
weighted least-squares affine with outlier blocks rejected (coarse-to-fine as in palom).

Each reference tissue block is read from the reference scan and, through the current
affine, from the moving scan into the same block frame; the sub-pixel shift between the two
(windowed cross-correlation of optical density, peak refined by a 2-D quadratic fit:
:func:`scorpion_build.correlation.phase_shifts`) is a local correspondence. Affines map
reference level-0 px -> moving level-0 px (docs/contracts.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.correlation import phase_shift
from scorpion_build.register.thumbs import View
from scorpion_build.slide import Slide
from scorpion_build.tissue import MIN_TISSUE_OD, od_grey

# A block is measured only when both sides show tissue and the correlation peak is clear:
# matching blocks peak at 0.9+ even across strong stain and blur differences, blocks of
# unrelated tissue at 0.1-0.4.
MIN_BLOCK_TISSUE = 0.3
MIN_RESPONSE = 0.45
# Outlier rejection: residuals beyond max(3 robust sigma, this floor) are dropped. The floor
# keeps real non-rigid scatter (a few um) from being trimmed as if it were an outlier.
MIN_REJECT_UM = 4.0
# First-pass consensus radius around the median block shift (um): blocks further off are
# mismatches (folds, debris, a missing tissue piece).
CONSENSUS_UM = 25.0
# The affine part of the fit needs blocks spread in 2-D; below this spread (um, smallest
# principal axis) only a translation update is estimated.
MIN_SPREAD_UM = 150.0


@dataclass
class BlockShift:
    ref_xy: np.ndarray  # block centre, reference level-0 px
    mov_xy: np.ndarray  # where it was found, moving level-0 px
    response: float  # correlation peak, normalised (0..1)


@dataclass
class FineResult:
    affine: geo.Affine  # reference level-0 px -> moving level-0 px
    blocks: int  # tissue blocks measured
    accepted: int  # blocks kept by the robust fit
    residuals_um: np.ndarray = field(default_factory=lambda: np.zeros(0))  # kept blocks
    model: str = "none"  # "affine", "translation" or "none" (coarse kept)


def block_boxes(view: View, block_um: float, max_blocks: int) -> list[tuple[float, ...]]:
    """Reference tissue blocks as level-0 boxes (x, y, w, h), spread over the tissue.

    ``block_um`` cells on a half-overlapping grid over the view (so small or thin tissue
    still yields blocks); cells at least half tissue are candidates; farthest-point
    sampling keeps up to ``max_blocks`` of them, spread out and deterministic.
    """
    cell = max(1, int(round(block_um / view.mpp)))
    step = max(1, cell // 2)
    h, w = view.mask.shape
    cands = []
    for y in range(0, h - cell + 1, step):
        for x in range(0, w - cell + 1, step):
            if view.mask[y : y + cell, x : x + cell].mean() >= 0.5:
                cands.append((x, y))
    if not cands:
        return []
    pts = np.array(cands, dtype=np.float64)
    chosen = _farthest_points(pts + cell / 2, max_blocks)
    sx, sy = view.to_level0[0, 0], view.to_level0[1, 1]
    return [(pts[i, 0] * sx, pts[i, 1] * sy, cell * sx, cell * sy) for i in chosen]


def _farthest_points(pts: np.ndarray, k: int) -> list[int]:
    if len(pts) <= k:
        return list(range(len(pts)))
    first = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((pts - pts[first]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((pts - pts[nxt]) ** 2).sum(axis=1))
    return sorted(chosen)


@dataclass
class RefBlock:
    """A reference tissue block read once and reused by every refinement pass."""

    to_level0: geo.Affine  # block px -> reference level-0 px
    size: tuple[int, int]  # (width, height) px
    od: np.ndarray  # smoothed optical density


def read_ref_block(ref: Slide, box: tuple[float, ...], mpp: float) -> RefBlock | None:
    """Reference block ``box`` (level-0 x, y, w, h) at ``mpp``; None without enough tissue."""
    x, y, w, h = box
    rgb = ref.read_region_at(box, mpp)
    out_h, out_w = rgb.shape[:2]
    od = od_grey(rgb)
    if (od > MIN_TISSUE_OD).mean() < MIN_BLOCK_TISSUE:
        return None
    to_level0 = geo.compose(geo.translation(x, y), geo.scaling(w / out_w, h / out_h))
    return RefBlock(to_level0, (out_w, out_h), _smooth(od))


def _smooth(od: np.ndarray) -> np.ndarray:
    # a light blur evens out the scanners' different sharpness before correlating
    return cv2.GaussianBlur(od, (0, 0), 1.0)


def measure_block(block: RefBlock, mov: Slide, affine: geo.Affine) -> BlockShift | None:
    """Correspondence for one reference block under the current affine (None: unusable)."""
    # the moving read goes through the reference block's frame
    mov_od = od_grey(mov.read_warped(geo.compose(affine, block.to_level0), block.size))
    if (mov_od > MIN_TISSUE_OD).mean() < MIN_BLOCK_TISSUE:
        return None  # e.g. a scan whose field of view misses this part of the tissue
    d, response = phase_shift(block.od, _smooth(mov_od))
    if response < MIN_RESPONSE:
        return None
    centre = np.array([[block.size[0] / 2.0, block.size[1] / 2.0]])
    ref_xy = geo.apply(block.to_level0, centre)[0]
    mov_xy = geo.apply(affine, geo.apply(block.to_level0, centre + d))[0]
    return BlockShift(ref_xy, mov_xy, response)


def weighted_affine(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> geo.Affine:
    """Weighted least-squares affine src -> dst (coordinates centred for conditioning)."""
    c_src, c_dst = src.mean(axis=0), dst.mean(axis=0)
    a = np.hstack([src - c_src, np.ones((len(src), 1))])
    sw = np.sqrt(weights)[:, None]
    sol, *_ = np.linalg.lstsq(a * sw, (dst - c_dst) * sw, rcond=None)
    m = np.hstack([sol[:2].T, sol[2][:, None]])  # centred src -> centred dst
    return geo.compose(geo.translation(*c_dst), m, geo.translation(*(-c_src)))


def robust_fit(
    shifts: list[BlockShift], prior: geo.Affine, um_per_px: float
) -> tuple[geo.Affine, np.ndarray, str]:
    """Affine from block correspondences with outlier blocks rejected.

    Consensus first (blocks whose displacement from ``prior`` is near the median one), then
    weighted least squares, re-trimmed at ``max(median + 3 robust sigma, MIN_REJECT_UM)``
    until the kept set settles (3 rounds at most). ``um_per_px`` is the moving scan's
    level-0 pixel size. Returns the affine, the kept-block mask and the model used.
    """
    src = np.array([s.ref_xy for s in shifts])
    dst = np.array([s.mov_xy for s in shifts])
    wts = np.array([s.response for s in shifts])
    disp = dst - geo.apply(prior, src)
    dev = np.linalg.norm(disp - np.median(disp, axis=0), axis=1) * um_per_px
    keep = dev <= CONSENSUS_UM
    model = "translation"
    affine = prior
    for _ in range(3):
        if keep.sum() == 0:
            return prior, keep, "none"
        model = _model_for(dst[keep], um_per_px)
        if model == "affine":
            affine = weighted_affine(src[keep], dst[keep], wts[keep])
        else:
            shift = np.average(disp[keep], axis=0, weights=wts[keep])
            affine = geo.compose(geo.translation(*shift), prior)
        res = np.linalg.norm(geo.apply(affine, src) - dst, axis=1) * um_per_px
        mad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep])))
        new_keep = res <= max(3.0 * mad + np.median(res[keep]), MIN_REJECT_UM)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return affine, keep, model


def _model_for(pts: np.ndarray, um_per_px: float) -> str:
    if len(pts) < 4:
        return "translation"
    spread = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False) / np.sqrt(len(pts))
    return "affine" if spread[-1] * um_per_px >= MIN_SPREAD_UM else "translation"


def ref_blocks(
    ref: Slide, ref_view: View, mpp: float, block_px: int, max_blocks: int
) -> list[RefBlock]:
    """The reference's tissue blocks, read once at ``mpp`` um/px."""
    boxes = block_boxes(ref_view, block_px * mpp, max_blocks)
    return [b for box in boxes if (b := read_ref_block(ref, box, mpp)) is not None]


def local_check(
    ref: Slide,
    mov: Slide,
    affine: geo.Affine,
    ref_view: View,
    mpp: float = 2.0,
    block_px: int = 160,
    max_blocks: int = 24,
) -> np.ndarray:
    """Misalignment (um) of ``affine`` measured on tissue blocks, without changing it: how
    far each block is found from where the affine puts it (QC for unrefined methods)."""
    blocks = ref_blocks(ref, ref_view, mpp, block_px, max_blocks)
    shifts = [s for b in blocks if (s := measure_block(b, mov, affine)) is not None]
    if not shifts:
        return np.zeros(0)
    src = np.array([s.ref_xy for s in shifts])
    dst = np.array([s.mov_xy for s in shifts])
    return np.linalg.norm(geo.apply(affine, src) - dst, axis=1) * float(np.mean(mov.mpp))


def refine(
    ref: Slide,
    mov: Slide,
    affine: geo.Affine,
    ref_view: View,
    mpp: float = 2.0,
    block_px: int = 160,
    max_blocks: int = 24,
    passes: int = 2,
) -> FineResult:
    """Refine a reference -> moving level-0 affine on tissue blocks at ``mpp`` um/px.

    Each pass re-measures every block through the current affine, so the second pass sees
    blocks already aligned to a pixel and measures only what is left; the residuals of the
    last fit are the local misalignment a global affine cannot remove.
    """
    blocks = ref_blocks(ref, ref_view, mpp, block_px, max_blocks)
    # correspondences are compared in the moving scan's level-0 px
    um_per_px = float(np.mean(mov.mpp))
    result = FineResult(affine, 0, 0)
    current = affine
    for _ in range(passes):
        measured = [(b, measure_block(b, mov, current)) for b in blocks]
        # later passes skip blocks that showed nothing to correlate (missing tissue, blur)
        blocks = [b for b, s in measured if s is not None]
        shifts = [s for _, s in measured if s is not None]
        if not shifts:
            break
        new, keep, model = robust_fit(shifts, current, um_per_px)
        if model == "none":
            break
        src = np.array([s.ref_xy for s in shifts])[keep]
        dst = np.array([s.mov_xy for s in shifts])[keep]
        res = np.linalg.norm(geo.apply(new, src) - dst, axis=1) * um_per_px
        current = new
        result = FineResult(new, len(shifts), int(keep.sum()), res, model)
    return result
