"""Choose square tissue regions in the reference slide that every registered scan covers.

Regions are chosen on a coarse joint tissue mask (the reference's tissue AND every other
scan's tissue mapped through its registration), must hold at least ``min_tissue`` tissue,
never overlap, and are spread by seeded farthest-point selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from scorpion_build import geometry as geo
from scorpion_build.slide import Slide
from scorpion_build.tissue import tissue_mask

# Default minimum tissue fraction of a region (in the joint mask). Half the region is enough
# to carry cancer/stroma context; lower values start admitting mostly-glass patches.
MIN_TISSUE_FRACTION = 0.5
# Resolution of the sampling grid: a region spans this many mask pixels.
REGION_GRID_PX = 32


@dataclass
class Region:
    x_um: float
    y_um: float
    region_um: float
    tissue_fraction: float


def joint_tissue_mask(
    reference: Slide, others: list[tuple[Slide, geo.Affine]], mpp: float
) -> np.ndarray:
    """Tissue mask of the reference at ``mpp`` um/px, AND-ed with every other scan's tissue
    mapped into the reference frame (``matrix``: reference level-0 px -> scan level-0 px)."""
    ref_mask = tissue_mask(reference.thumbnail_at(mpp), mpp)
    h, w = ref_mask.shape
    ref_w0, ref_h0 = reference.dimensions
    # mask px -> reference level-0 px (exact: the thumbnail spans the whole level 0)
    mask_to_ref = geo.scaling(ref_w0 / w, ref_h0 / h)
    joint = ref_mask.copy()
    for slide, matrix in others:
        other = tissue_mask(slide.thumbnail_at(mpp), mpp).astype(np.uint8)
        ow0, oh0 = slide.dimensions
        other_to_mask = geo.scaling(other.shape[1] / ow0, other.shape[0] / oh0)
        m = geo.compose(other_to_mask, matrix, mask_to_ref)  # ref mask px -> other mask px
        warped = geo.warp_to(other, m, (w, h), interpolation=cv2.INTER_NEAREST)
        joint &= warped.astype(bool)
    return joint


def sample_regions(
    mask: np.ndarray,
    mask_mpp: float,
    region_um: float,
    n_regions: int,
    seed: int = 0,
    min_tissue: float = MIN_TISSUE_FRACTION,
) -> list[Region]:
    """Pick up to ``n_regions`` non-overlapping squares on ``mask`` (um in mask frame).

    Candidates are all grid positions whose square holds ``>= min_tissue`` tissue. The first
    pick is random (by ``seed``) among the tissue-richer half; each next pick maximises its
    distance to those already chosen (saturating at two region sides) plus its tissue
    fraction, which spreads regions over the tissue without drifting to its ragged edges.
    """
    side = region_um / mask_mpp
    k = int(round(side))
    h, w = mask.shape
    if k < 1 or k > min(h, w):
        return []
    integral = cv2.integral(mask.astype(np.uint8), sdepth=cv2.CV_64F)
    frac = (integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k]) / (k * k)
    ys, xs = np.nonzero(frac >= min_tissue)
    if len(xs) == 0:
        return []
    rng = np.random.default_rng(seed)
    tissue = frac[ys, xs]
    # spread matters up to two region sides apart; beyond that, prefer more tissue
    spread = 2.0 * k
    jitter = rng.random(len(xs)) * 1e-3
    chosen: list[int] = []
    free = np.ones(len(xs), bool)
    dist = np.full(len(xs), spread)
    for _ in range(n_regions):
        if not free.any():
            break
        if chosen:
            score = np.minimum(dist, spread) / spread + tissue + jitter
        else:  # a random start among the better-than-median tissue positions
            score = (tissue >= np.median(tissue[free])) * rng.random(len(xs))
        idx = int(np.argmax(np.where(free, score, -np.inf)))
        chosen.append(idx)
        # squares overlap unless separated by a full side along x or y
        free &= (np.abs(xs - xs[idx]) >= k) | (np.abs(ys - ys[idx]) >= k)
        dist = np.minimum(dist, np.hypot(xs - xs[idx], ys - ys[idx]))
    scale = mask_mpp * side / k  # grid steps in um (k px == region_um)
    regions = [
        Region(float(xs[i] * scale), float(ys[i] * scale), region_um, float(frac[ys[i], xs[i]]))
        for i in chosen
    ]
    # stable order: top-to-bottom, left-to-right, so indices read naturally
    return sorted(regions, key=lambda r: (r.y_um, r.x_um))


def field_too_small(mask: np.ndarray, mask_mpp: float, region_um: float) -> str:
    """A note for a message when the scanned field (``mask`` at ``mask_mpp`` um/px) is
    narrower than one region, so that no region can fit; "" otherwise."""
    field_um = min(mask.shape) * mask_mpp
    if field_um >= region_um:
        return ""
    return (
        f" (the scanned field, {field_um:.0f} um across, is smaller than --region-um "
        f"{region_um:g}; lower --region-um)"
    )


def region_tissue_fraction(
    mask: np.ndarray, mask_mpp: float, x_um: float, y_um: float, region_um: float
) -> float:
    """Tissue fraction of a given region on a mask (0 where it leaves the mask)."""
    x0, y0 = int(round(x_um / mask_mpp)), int(round(y_um / mask_mpp))
    k = max(1, int(round(region_um / mask_mpp)))
    window = np.zeros((k, k), bool)
    sub = mask[max(y0, 0) : y0 + k, max(x0, 0) : x0 + k]
    window[max(-y0, 0) : max(-y0, 0) + sub.shape[0], max(-x0, 0) : max(-x0, 0) + sub.shape[1]] = sub
    return float(window.mean())
